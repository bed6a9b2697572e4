"""Sampled tokens in, ``Output`` deltas out: text, logprobs, stop checks, usage.

Apart from sampling and from the KV cache: the processor decides *why* a sequence
ends, and the engine core then finishes it (frees its sampler, hands its KV to the
scheduler). It keeps no per-step buffers: each sequence carries its pending delta
(``new_text``, ``new_token_ids``, ``new_logprobs``) until ``make_output`` takes it.
"""

from __future__ import annotations

import numpy as np

from llmport.engines.batching.backend import Backend, FloatMatrix
from llmport.engines.batching.detokenizer import IncrementalDetokenizer
from llmport.engines.batching.logprobs import token_logprob
from llmport.engines.batching.sampler import SampleSite
from llmport.engines.batching.sequence import Sequence
from llmport.types import FinishReason, Output, SamplingParams, Usage


class OutputProcessor:
    """Mutates only the sequences' pending deltas, detokenizers and timings."""

    def __init__(self, backend: Backend) -> None:
        self._piece = backend.piece
        self._eog_token_ids = backend.eog_token_ids
        self._max_model_len = backend.max_model_len

    def new_detokenizer(self, params: SamplingParams) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self._piece, params.stop, params.include_stop_str_in_output)

    def process_token(
        self, site: SampleSite, token_id: int, logits: FloatMatrix, now: float
    ) -> FinishReason | None:
        """Account for the token just appended to ``site.seq``; why it ends the sequence."""
        seq = site.seq
        if seq.timings.first_token is None:
            seq.timings.first_token = now
        if seq.params.logprobs is not None:
            seq.new_logprobs.append(
                token_logprob(logits[site.row], token_id, seq.params.logprobs, self._token_text)
            )
        return self._stop_reason(seq, token_id)

    def process_embeddings(
        self, seqs: list[Sequence], hidden: FloatMatrix, now: float, normalize: bool = True
    ) -> None:
        """Embedding requests end after prefill: the last token's state, L2-normalized
        (``normalize`` False: as the backend gave it, a reranker's scores)."""
        rows = hidden.astype(np.float64)
        if normalize:
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        for seq, row in zip(seqs, rows, strict=True):
            seq.embedding = row.tolist()
            seq.timings.first_token = now

    def flush(self, seq: Sequence) -> None:
        """The sequence ends: release the text held back for stop strings."""
        seq.new_text += seq.detokenizer.flush()

    def make_output(self, seq: Sequence) -> Output:
        """The sequence's delta since its last output (and the totals when it finished)."""
        output = Output(
            request_id=seq.request_id,
            index=seq.index,
            text=seq.new_text,
            token_ids=seq.new_token_ids,
            logprobs=seq.new_logprobs or None,
            finish_reason=seq.finish_reason,
            embedding=seq.embedding,
        )
        if seq.is_first_output:
            output.prompt_token_ids = seq.token_ids[: seq.num_prompt_tokens]
            seq.is_first_output = False
        if seq.is_finished:
            output.usage = Usage(
                prompt_tokens=seq.num_prompt_tokens,
                completion_tokens=seq.num_output_tokens,
                cached_tokens=seq.num_cached_tokens,
            )
            output.timings = seq.timings
        seq.new_text, seq.new_token_ids, seq.new_logprobs = "", [], []
        return output

    def _stop_reason(self, seq: Sequence, token_id: int) -> FinishReason | None:
        params = seq.params
        # A finished grammar allows only end tokens: they end it even with ignore_eos.
        ignore_eos = params.ignore_eos and seq.grammar is None
        is_eog = token_id in self._eog_token_ids and not ignore_eos
        if is_eog or token_id in params.stop_token_ids:
            return FinishReason.STOP
        seq.new_text += seq.detokenizer.push(token_id)
        if seq.detokenizer.stopped:
            return FinishReason.STOP
        if seq.num_output_tokens >= seq.max_tokens or len(seq) >= self._max_model_len:
            return FinishReason.LENGTH
        return None

    def _token_text(self, token_id: int) -> str:
        return self._piece(token_id).decode(errors="replace")
