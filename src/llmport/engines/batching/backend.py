"""The contract between the engine and a compute backend.

A backend owns one model and one context with a unified KV cache addressed by
integer *slots* (llama.cpp sequence ids). The engine decides what to run; the
backend only runs it. Nothing here is thread-safe: one engine loop owns it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from llmport.types import SamplingParams

Int32Array = npt.NDArray[np.int32]
FloatMatrix = npt.NDArray[np.float32]


class KvCacheFull(Exception):
    """llama.cpp found no KV cells for the batch; its memory is as before the call."""


class DecodeBatch(NamedTuple):
    """Tokens for one forward pass; row i of the result is the i-th token with ``is_output``."""

    token_ids: Int32Array
    positions: Int32Array
    slots: Int32Array
    is_output: npt.NDArray[np.int8]


class TokenSampler(Protocol):
    """A per-sequence sampling chain with its own state (penalty history, RNG)."""

    def sample(self, output_index: int, row: FloatMatrix) -> int:
        """Pick a token for output ``output_index`` of the last decode, whose logits are
        ``row``, and accept it. (An embedding pass after that decode overwrites
        llama.cpp's output buffer: then only ``row`` holds them.)"""
        ...

    def close(self) -> None: ...


class TokenFilter(Protocol):
    """A per-sequence grammar: which tokens may come next (it owns C memory: close it)."""

    def allows(self, token_id: int) -> bool: ...

    def best_allowed(self, row: FloatMatrix, token_ids: npt.NDArray[np.intp]) -> int | None:
        """The highest-logit allowed token among ``token_ids``, or None."""
        ...

    def mask(self, row: FloatMatrix) -> None:
        """Set the logits of every disallowed token to -inf, in place."""
        ...

    def accept(self, token_id: int) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """One loaded model. The engine owns it and calls ``close()`` exactly once."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def max_model_len(self) -> int:
        """Longest sequence (prompt + output) one slot may hold."""
        ...

    #: A reranker: ``embed`` returns each sequence's classifier scores (rank pooling),
    #: which are final (never normalized).
    is_reranker: bool

    @property
    def num_kv_tokens(self) -> int:
        """KV cells of all slots together (split evenly among them per sequence)."""
        ...

    @property
    def kv_layout(self) -> Literal["unified", "per_seq"]:
        """One pool of cells for every slot, or one stream per slot."""
        ...

    @property
    def num_slots(self) -> int:
        """Slots (sequence ids) usable at once, running and cached together."""
        ...

    @property
    def max_num_batched_tokens(self) -> int:
        """Most tokens one ``decode`` accepts."""
        ...

    @property
    def eog_token_ids(self) -> frozenset[int]: ...

    @property
    def bos_token(self) -> str:
        """The BOS token's text, as chat templates write it ("" when the model has none)."""
        ...

    @property
    def eos_token(self) -> str: ...

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def piece(self, token_id: int) -> bytes:
        """The token's raw bytes (maybe part of a UTF-8 character); b"" for control tokens."""
        ...

    def decode(self, batch: DecodeBatch) -> FloatMatrix:
        """Run the batch; return its output logits, valid until the next call.

        Raises KvCacheFull (nothing changed) when the cache has no room.
        """
        ...

    def embed(self, batch: DecodeBatch) -> FloatMatrix:
        """Run the batch (every token an output) and return its final hidden states
        (a copy). Invalidates the logits of the last ``decode``."""
        ...

    def remove(self, slot: int, start: int = 0) -> None:
        """Free the slot's cells at positions >= start."""
        ...

    def copy_prefix(self, src_slot: int, dst_slot: int, num_tokens: int) -> None:
        """Give the empty dst src's first ``num_tokens`` tokens: shared cells in a
        unified cache, a copy of the stream trimmed to the prefix per sequence."""
        ...

    def can_reuse_prefix(self, slot: int, num_tokens: int) -> bool:
        """Whether the slot still holds what a continuation after ``num_tokens`` needs
        (sliding-window layers drop old cells)."""
        ...

    def slot_positions(self, slot: int) -> tuple[int, int] | None:
        """(min, max) positions the slot holds according to llama.cpp, None if empty."""
        ...

    def new_sampler(self, params: SamplingParams, seed: int) -> TokenSampler: ...

    def new_grammar(self, gbnf: str) -> TokenFilter:
        """Raises InvalidParameter when the grammar does not parse."""
        ...

    def close(self) -> None: ...
