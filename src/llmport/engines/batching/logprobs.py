"""Log-probabilities of chosen and top tokens, vectorised over one logits row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llmport.types import TokenLogprob


def token_logprob(
    row: np.ndarray, token_id: int, num_top: int, text: Callable[[int], str]
) -> TokenLogprob:
    """The model's (untempered) log-probability of ``token_id`` and the ``num_top`` best."""
    peak = float(row.max())
    log_norm = peak + float(np.log(np.exp(row - peak, dtype=np.float64).sum()))
    top: list[tuple[int, str, float]] = []
    if num_top > 0:
        best = np.argpartition(row, -num_top)[-num_top:]
        best = best[np.argsort(row[best])[::-1]]
        top = [(int(t), text(int(t)), float(row[t]) - log_norm) for t in best]
    return TokenLogprob(token_id, text(token_id), float(row[token_id]) - log_norm, top)
