"""The forward half of a step: a plan becomes llama.cpp batches, the batches logits.

The runner never changes a plan and never re-plans. llama.cpp may still refuse a
batch the scheduler's KV estimate allowed (``KvCacheFull``); the runner then
reports the refusal and the scheduler answers it in its next ``schedule()``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from llmport.engines.batching.backend import Backend, DecodeBatch, FloatMatrix, KvCacheFull
from llmport.engines.batching.sampler import SampleSite
from llmport.engines.batching.scheduler import ScheduledChunk
from llmport.engines.batching.sequence import Sequence


class ForwardResult(NamedTuple):
    """One forward pass: a logits row per sample site and the embedding requests' states.

    ``logits`` is llama.cpp's buffer, valid until the next decode; ``hidden`` row i is
    the last token's hidden state of ``embedded[i]`` (None when the plan had none).
    """

    logits: FloatMatrix
    sites: list[SampleSite]
    embedded: list[Sequence]
    hidden: FloatMatrix | None


class ModelRunner:
    """Runs plans on the backend. Mutates llama.cpp memory only; never a sequence."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._no_logits = np.empty((0, backend.vocab_size), dtype=np.float32)

    def execute(self, chunks: list[ScheduledChunk]) -> ForwardResult | None:
        """Run the plan; None when llama.cpp refused its batch (its memory is unchanged).

        A refusal of the embedding batch, after the main batch ran, is not survivable
        here (the main batch's KV is written but not committed): it propagates.
        """
        if not chunks:
            return ForwardResult(self._no_logits, [], [], None)
        main, finals = _batches(chunks)
        try:
            logits = self.backend.decode(main) if len(main.token_ids) else self._no_logits
        except KvCacheFull:
            return None
        sites = _sample_sites(chunks)
        if finals is None:
            return ForwardResult(logits, sites, [], None)
        # The embedding pass reuses llama.cpp's output buffer: keep the logits.
        logits = logits.copy()
        hidden = self.backend.embed(finals)
        return ForwardResult(
            logits, sites, [c.seq for c in chunks if _is_embedding_final(c)], hidden
        )


class _Span(NamedTuple):
    """Tokens [start, start + num_tokens) of ``seq``, and whether the last one outputs."""

    seq: Sequence
    start: int
    num_tokens: int
    is_output: bool


def _is_embedding_final(chunk: ScheduledChunk) -> bool:
    return chunk.seq.is_embedding and chunk.reaches_end


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
