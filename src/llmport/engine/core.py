"""EngineCore: one model's requests, advanced one batched forward pass per step."""

from __future__ import annotations

import logging
import random
import time
from typing import NamedTuple

import numpy as np

from llmport.backends.base import Backend, DecodeBatch, FloatMatrix, KvCacheFull
from llmport.config import EngineConfig
from llmport.engine.detokenizer import IncrementalDetokenizer
from llmport.engine.kv_cache import KvCacheManager
from llmport.engine.logprobs import token_logprob
from llmport.engine.messages import Stats
from llmport.engine.prefix_cache import PrefixCache
from llmport.engine.sampler import SampleSite, needs_chain, sample
from llmport.engine.scheduler import ScheduledChunk, Scheduler
from llmport.engine.sequence import Sequence
from llmport.errors import ContextLengthExceeded, InvalidParameter
from llmport.types import FinishReason, Output, Request, SamplingParams, Usage

logger = logging.getLogger(__name__)


class EngineCore:
    """Owns the backend, the scheduler and every live sequence. Single-threaded."""

    def __init__(self, backend: Backend, config: EngineConfig) -> None:
        self.backend = backend
        self.config = config
        kv = KvCacheManager(backend)
        num_cache_entries = max(0, backend.num_slots - config.max_num_seqs)
        self.scheduler = Scheduler(
            kv,
            PrefixCache(kv, num_cache_entries if config.enable_prefix_caching else 0),
            config.max_num_seqs,
            min(config.max_num_batched_tokens, backend.max_num_batched_tokens),
        )
        self._rng = random.Random(config.seed)
        self._num_live: dict[str, int] = {}

    @property
    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished

    @property
    def num_requests(self) -> int:
        return len(self._num_live)

    # -- requests ----------------------------------------------------------------

    def add_request(self, request: Request) -> list[int]:
        """Validate and queue; returns the prompt's token ids. Raises ClientError."""
        if request.request_id in self._num_live:
            raise InvalidParameter(f"request id {request.request_id!r} is already running")
        params = request.params
        if request.embed:
            params = request.params = SamplingParams(n=1, max_tokens=1, temperature=0.0)
        params.validate(self.backend.vocab_size)
        prompt_ids = self._prompt_token_ids(request)
        room = self.backend.max_model_len - len(prompt_ids)
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        for index in range(params.n):
            self.scheduler.add(self._new_sequence(request, index, prompt_ids, max_tokens))
        self._num_live[request.request_id] = params.n
        return prompt_ids

    def _prompt_token_ids(self, request: Request) -> list[int]:
        if request.prompt_token_ids is not None:
            ids = list(request.prompt_token_ids)
            bad = [t for t in ids if not 0 <= t < self.backend.vocab_size]
            if bad:
                raise InvalidParameter(
                    f"prompt token ids {bad[:5]} are outside the vocabulary", param="prompt"
                )
        else:
            ids = (
                self.backend.tokenize(request.prompt, request.add_special_tokens)
                if request.prompt
                else []
            )
        if not ids:
            raise InvalidParameter("the prompt is empty", param="prompt")
        if len(ids) >= self.backend.max_model_len:
            raise ContextLengthExceeded(
                f"the prompt has {len(ids)} tokens but this model's context holds "
                f"{self.backend.max_model_len} (prompt plus at least one generated token)",
                param="prompt",
            )
        return ids

    def _new_sequence(
        self, request: Request, index: int, prompt_ids: list[int], max_tokens: int
    ) -> Sequence:
        params = request.params
        seed = self._rng.getrandbits(32) if params.seed is None else params.seed + index
        sampler = self.backend.new_sampler(params, seed) if needs_chain(params) else None
        detokenizer = IncrementalDetokenizer(
            self.backend.piece, params.stop, params.include_stop_str_in_output
        )
        seq = Sequence(
            request.request_id,
            index,
            prompt_ids,
            params,
            max_tokens,
            detokenizer,
            sampler,
            is_embedding=request.embed,
        )
        if params.grammar is not None:
            seq.grammar = self.backend.new_grammar(params.grammar)
        return seq

    def abort_request(self, request_id: str) -> list[Output]:
        """Stop a request now; its KV is freed (kept as a cached prefix) this call."""
        outputs = []
        for seq in self.scheduler.find(request_id):
            self._finish(seq, FinishReason.ABORT)
            outputs.append(self._output(seq))
        return outputs

    def stats(self) -> Stats:
        scheduler = self.scheduler
        return Stats(
            num_requests=len(self._num_live),
            num_running=len(scheduler.running),
            num_waiting=len(scheduler.waiting),
            num_cached_prefixes=len(scheduler.prefix_cache),
            num_used_kv_cells=scheduler.kv.num_used_cells,
            num_kv_cells=scheduler.kv.num_cells,
        )

    def reset_prefix_cache(self) -> None:
        self.scheduler.prefix_cache.clear()

    # -- the step ------------------------------------------------------------------

    def step(self) -> list[Output]:
        """Schedule, forward, update: one batched llama_decode for every live sequence."""
        chunks, logits, hidden = self._forward(self.scheduler.schedule())
        return self._update(chunks, logits, hidden)

    def _forward(
        self, chunks: list[ScheduledChunk]
    ) -> tuple[list[ScheduledChunk], FloatMatrix, FloatMatrix | None]:
        empty = np.empty((0, self.backend.vocab_size), dtype=np.float32)
        while chunks:
            main, finals = _batches(chunks)
            try:
                logits = self.backend.decode(main) if len(main.token_ids) else empty
            except KvCacheFull:
                if not self.scheduler.relieve(chunks):
                    raise
                chunks = self.scheduler.schedule()
                continue
            if finals is None:
                return chunks, logits, None
            # The embedding pass reuses llama.cpp's output buffer: keep the logits.
            logits = logits.copy()
            return chunks, logits, self.backend.embed(finals)
        return chunks, empty, None

    def _update(
        self, chunks: list[ScheduledChunk], logits: FloatMatrix, hidden: FloatMatrix | None
    ) -> list[Output]:
        self.scheduler.commit(chunks)
        now = time.monotonic()
        outputs = [] if hidden is None else self._embed(chunks, hidden, now)
        sites = _sample_sites(chunks)
        for site, token_id in zip(sites, sample(logits, sites), strict=True):
            self._accept(site, token_id, logits, now)
            outputs.append(self._output(site.seq))
        return outputs

    def _embed(self, chunks: list[ScheduledChunk], hidden: FloatMatrix, now: float) -> list[Output]:
        """Embedding requests end after prefill: the last token's state, L2-normalized."""
        rows = hidden.astype(np.float64)
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        outputs = []
        for seq, row in zip(_embedding_finals(chunks), rows, strict=True):
            seq.embedding = row.tolist()
            seq.timings.first_token = now
            self._finish(seq, FinishReason.STOP)
            outputs.append(self._output(seq))
        return outputs

    def _accept(self, site: SampleSite, token_id: int, logits: FloatMatrix, now: float) -> None:
        seq = site.seq
        seq.append(token_id)
        if seq.timings.first_token is None:
            seq.timings.first_token = now
        if seq.params.logprobs is not None:
            seq.new_logprobs.append(
                token_logprob(logits[site.row], token_id, seq.params.logprobs, self._token_text)
            )
        reason = self._stop_reason(seq, token_id)
        if reason is not None:
            self._finish(seq, reason)

    def _stop_reason(self, seq: Sequence, token_id: int) -> FinishReason | None:
        params = seq.params
        # A finished grammar allows only end tokens: they end it even with ignore_eos.
        ignore_eos = params.ignore_eos and seq.grammar is None
        is_eog = token_id in self.backend.eog_token_ids and not ignore_eos
        if is_eog or token_id in params.stop_token_ids:
            return FinishReason.STOP
        seq.new_text += seq.detokenizer.push(token_id)
        if seq.detokenizer.stopped:
            return FinishReason.STOP
        if seq.num_output_tokens >= seq.max_tokens or len(seq) >= self.backend.max_model_len:
            return FinishReason.LENGTH
        return None

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        seq.new_text += seq.detokenizer.flush()
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
        if seq.grammar is not None:
            seq.grammar.close()
            seq.grammar = None
        self.scheduler.finish(seq, reason)
        seq.timings.finished = time.monotonic()
        remaining = self._num_live.get(seq.request_id, 1) - 1
        if remaining:
            self._num_live[seq.request_id] = remaining
        else:
            self._num_live.pop(seq.request_id, None)

    def _output(self, seq: Sequence) -> Output:
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

    def _token_text(self, token_id: int) -> str:
        return self.backend.piece(token_id).decode(errors="replace")

    def close(self) -> None:
        for seq in [*self.scheduler.running, *self.scheduler.waiting]:
            self._finish(seq, FinishReason.ABORT)
        self.scheduler.prefix_cache.clear()
        self.backend.close()


class _Span(NamedTuple):
    """Tokens [start, start + num_tokens) of ``seq``, and whether the last one outputs."""

    seq: Sequence
    start: int
    num_tokens: int
    is_output: bool


def _is_embedding_final(chunk: ScheduledChunk) -> bool:
    return chunk.seq.is_embedding and chunk.reaches_end


def _embedding_finals(chunks: list[ScheduledChunk]) -> list[Sequence]:
    return [c.seq for c in chunks if _is_embedding_final(c)]


def _batches(chunks: list[ScheduledChunk]) -> tuple[DecodeBatch, DecodeBatch | None]:
    """The step's batch, and the embedding requests' last tokens apart (llama.cpp outputs
    every token of a batch that returns embeddings, so those go in a batch of their own)."""
    spans = []
    finals = []
    for c in chunks:
        if _is_embedding_final(c):
            spans.append(_Span(c.seq, c.start, c.num_tokens - 1, False))
            finals.append(_Span(c.seq, c.start + c.num_tokens - 1, 1, True))
        else:
            spans.append(_Span(c.seq, c.start, c.num_tokens, c.reaches_end))
    return _batch(spans), _batch(finals) if finals else None


def _batch(spans: list[_Span]) -> DecodeBatch:
    """Concatenate the spans' tokens; only a span marked ``is_output`` outputs (its last)."""
    spans = [s for s in spans if s.num_tokens]
    token_ids = np.fromiter(
        (t for s in spans for t in s.seq.token_ids[s.start : s.start + s.num_tokens]),
        dtype=np.int32,
    )
    positions = np.concatenate(
        [np.arange(s.start, s.start + s.num_tokens) for s in spans] or [np.empty(0, np.int64)]
    )
    slots = np.repeat(
        np.array([s.seq.slot for s in spans], dtype=np.int32), [s.num_tokens for s in spans]
    )
    is_output = np.zeros(len(token_ids), dtype=np.int8)
    ends = np.cumsum([s.num_tokens for s in spans], dtype=np.int64) - 1
    is_output[ends[[s.is_output for s in spans]]] = 1
    return DecodeBatch(token_ids, positions.astype(np.int32), slots, is_output)


def _sample_sites(chunks: list[ScheduledChunk]) -> list[SampleSite]:
    """Output rows of the main batch, in order (embedding finals have none there)."""
    sites: list[SampleSite] = []
    batch_index = -1
    for chunk in chunks:
        is_final = _is_embedding_final(chunk)
        batch_index += chunk.num_tokens - is_final
        if chunk.reaches_end and not is_final:
            sites.append(SampleSite(chunk.seq, len(sites), batch_index))
    return sites
