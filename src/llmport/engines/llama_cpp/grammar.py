"""A llama.cpp grammar (GBNF) as a token filter the engine drives row by row.

The engine first asks whether the token it would pick anyway is allowed (one
candidate: cheap); only when it is not does it mask the whole logits row, which
makes llama.cpp test every vocabulary entry (262,144 for Gemma) against the grammar.
"""

from __future__ import annotations

import ctypes

import llama_cpp as llama
import numpy as np

from llmport.engines.batching.backend import FloatMatrix
from llmport.errors import InvalidParameter

# llama_token_data: {int32 id; float logit; float p}, 12 bytes, no padding.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class LlamaGrammar:
    """One sequence's grammar state. Owns a llama_sampler; ``close()`` frees it."""

    def __init__(self, vocab: llama.llama_vocab_p, vocab_size: int, gbnf: str) -> None:
        self._sampler = llama.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not self._sampler:
            raise InvalidParameter(
                "the grammar does not parse (llama.cpp's log says where)", param="grammar"
            )
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._all = np.zeros(vocab_size, dtype=_TOKEN_DATA)
        self._all["id"] = np.arange(vocab_size, dtype=np.int32)

    def allows(self, token_id: int) -> bool:
        self._one[0] = (token_id, 0.0, 0.0)
        self._apply(self._one)
        return bool(np.isfinite(self._one[0]["logit"]))

    def best_allowed(self, row: FloatMatrix, token_ids: np.ndarray) -> int | None:
        """The highest-logit token among ``token_ids`` the grammar allows, if any."""
        few = np.zeros(len(token_ids), dtype=_TOKEN_DATA)
        few["id"] = token_ids
        few["logit"] = row[token_ids]
        self._apply(few)
        allowed = np.isfinite(few["logit"])
        if not allowed.any():
            return None
        return int(few["id"][allowed][np.argmax(few["logit"][allowed])])

    def mask(self, row: FloatMatrix) -> None:
        """Set every token the grammar rejects to -inf in ``row`` (in place)."""
        self._all["logit"] = row
        self._apply(self._all)
        row[:] = self._all["logit"]

    def accept(self, token_id: int) -> None:
        llama.llama_sampler_accept(self._sampler, token_id)

    def _apply(self, candidates: np.ndarray) -> None:
        array = llama.llama_token_data_array(
            data=candidates.ctypes.data_as(ctypes.POINTER(llama.llama_token_data)),
            size=len(candidates),
            selected=-1,
            sorted=False,
        )
        llama.llama_sampler_apply(self._sampler, ctypes.byref(array))

    def close(self) -> None:
        if self._sampler:
            llama.llama_sampler_free(self._sampler)
            self._sampler = None
