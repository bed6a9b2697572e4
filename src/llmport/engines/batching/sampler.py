"""Turn a step's logits rows into next tokens without looping over the vocabulary.

Plain greedy rows (the common case, and the benchmark's) take one vectorised
``argmax`` over the whole output matrix; every other row runs its sequence's
llama.cpp sampler chain, which works in C.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from llmport.engines.batching.backend import FloatMatrix, TokenFilter
from llmport.engines.batching.sequence import Sequence
from llmport.types import SamplingParams

#: Top logits a greedy constrained row tries before masking the whole vocabulary.
GRAMMAR_SHORTLIST = 64


class SampleSite(NamedTuple):
    """Where a sequence's logits are: its row in the output matrix, its index in the batch."""

    seq: Sequence
    row: int
    batch_index: int


def needs_chain(params: SamplingParams) -> bool:
    """Greedy without penalties (logit bias included) skips the llama.cpp chain."""
    return not params.is_greedy or params.has_penalties


def sample(logits: FloatMatrix, sites: list[SampleSite]) -> list[int]:
    """One token per site, in order; sampler chains accept their own token.

    Greedy rows get their logit bias added in place: the buffer is llama.cpp's
    and is rewritten by the next decode, and chain rows are not touched.
    """
    for site in sites:
        if site.seq.sampler is None and site.seq.params.logit_bias:
            _add_bias(logits[site.row], site.seq.params.logit_bias)
    if all(site.seq.sampler is None and site.seq.grammar is None for site in sites):
        # Sites are the output rows in order, so one argmax covers them all.
        return [int(t) for t in np.argmax(logits, axis=1)]
    return [_sample_one(logits, site) for site in sites]


def _sample_one(logits: FloatMatrix, site: SampleSite) -> int:
    grammar = site.seq.grammar
    row = logits[site.row]
    sampler = site.seq.sampler
    if sampler is not None:
        token_id = sampler.sample(site.batch_index, row)
        if grammar is not None and not grammar.allows(token_id):
            # Masking the whole vocabulary costs milliseconds: only when the pick breaks
            # the grammar. (The chain saw the refused token too: penalties count it.)
            grammar.mask(row)  # The chain samples this same row.
            token_id = sampler.sample(site.batch_index, row)
    else:
        token_id = int(np.argmax(row))
        if grammar is not None and not grammar.allows(token_id):
            token_id = _best_allowed_greedy(row, grammar)
    if grammar is not None:
        grammar.accept(token_id)
    return token_id


def _best_allowed_greedy(row: FloatMatrix, grammar: TokenFilter) -> int:
    """The allowed token with the highest logit. The best allowed among the top
    ``GRAMMAR_SHORTLIST`` logits is the best allowed overall, so the whole vocabulary is
    masked only when none of those is allowed."""
    size = min(GRAMMAR_SHORTLIST, len(row))
    shortlist = np.argpartition(row, -size)[-size:]
    best = grammar.best_allowed(row, shortlist)
    if best is not None:
        return best
    grammar.mask(row)
    return int(np.argmax(row))


def _add_bias(row: np.ndarray, bias: dict[int, float]) -> None:
    ids = np.fromiter(bias.keys(), dtype=np.int64, count=len(bias))
    row[ids] += np.fromiter(bias.values(), dtype=np.float32, count=len(bias))
