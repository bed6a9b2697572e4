"""A deterministic Backend with llama.cpp's KV cell semantics, no model.

The cache is a fixed array of cells: one pool (``kv_layout="unified"``) or one
equal stream per slot (``"per_seq"``, where a copy duplicates cells into the
other stream and a batch must list its slots in order, as llama.cpp groups
consecutive streams). A cell holds one position, the history it
was computed from (the tokens its slot held at positions 0..pos, the token at
``pos`` last) and the set of slots that see it. ``copy_prefix`` tags cells with
one more slot, ``remove`` untags them and frees cells no slot sees, ``decode``
takes one free cell per token. The "model" is a hash: a row's argmax is
``next_token(history)``, so any KV that holds the wrong tokens (wrong slot,
wrong position, stale shared cells) changes the outputs, and
``assert_holds`` names the exact cell that is wrong.

It is stricter than llama.cpp where leniency could only hide an engine bug:
copying into a non-empty slot, copying positions the source lacks, or decoding
a slot at a position other than the one after its last raises
``FakeBackendMisuse`` (llama.cpp would silently corrupt or fail with -1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmport.engines.batching.backend import DecodeBatch, FloatMatrix, KvCacheFull
from llmport.types import SamplingParams

_HASH_MODULUS = 1_000_003


class FakeBackendMisuse(AssertionError):
    """The engine asked for something llama.cpp would do wrong or refuse."""


def next_token(history: tuple[int, ...] | list[int], vocab_size: int = 256) -> int:
    """The fake model: a deterministic function of every token seen, in order."""
    acc = 0
    for position, token in enumerate(history):
        acc = (acc * 31 + token * 7 + position + 1) % _HASH_MODULUS
    return acc % vocab_size


def reference_output(prompt: list[int], num_tokens: int, vocab_size: int = 256) -> list[int]:
    """What an unconstrained greedy run of ``prompt`` generates."""
    token_ids = list(prompt)
    for _ in range(num_tokens):
        token_ids.append(next_token(token_ids, vocab_size))
    return token_ids[len(prompt) :]


@dataclass
class Cell:
    position: int
    history: tuple[int, ...]
    slots: set[int] = field(default_factory=set)


class GreedySampler:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    def sample(self, output_index: int, row: FloatMatrix) -> int:
        return int(np.argmax(row))

    def close(self) -> None:
        pass


class FakeBackend:
    """Implements the batching engine's ``Backend``; everything is exact and deterministic.

    ``num_real_cells`` (default ``num_kv_tokens``) lets a test advertise more
    cells than exist, to make ``decode`` refuse a batch the engine thought fits.
    ``sliding_window`` plays a sliding-window model: a slot gives back a prefix only
    while it holds fewer than that many positions past it (llama.cpp's window layers
    drop what lies behind their last window).
    """

    is_reranker = False

    def __init__(
        self,
        num_kv_tokens: int = 256,
        num_slots: int = 8,
        max_num_batched_tokens: int = 64,
        vocab_size: int = 256,
        max_model_len: int | None = None,
        num_real_cells: int | None = None,
        kv_layout: str = "unified",
        sliding_window: int | None = None,
    ) -> None:
        self._num_kv_tokens = num_kv_tokens
        self.sliding_window = sliding_window
        self._num_slots = num_slots
        self._max_num_batched_tokens = max_num_batched_tokens
        self._vocab_size = vocab_size
        self._kv_layout = kv_layout
        self.stream_size = num_kv_tokens // num_slots if kv_layout == "per_seq" else 0
        self._max_model_len = max_model_len or self.stream_size or num_kv_tokens
        self.cells: list[Cell | None] = [None] * (num_real_cells or num_kv_tokens)
        self.unreusable_slots: set[int] = set()
        self.batches: list[DecodeBatch] = []
        self.num_refused = 0
        self.last_logits: FloatMatrix = np.empty((0, vocab_size), dtype=np.float32)
        self.is_closed = False

    # -- properties ---------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def num_kv_tokens(self) -> int:
        return self._num_kv_tokens

    @property
    def num_slots(self) -> int:
        return self._num_slots

    @property
    def max_num_batched_tokens(self) -> int:
        return self._max_num_batched_tokens

    @property
    def kv_layout(self) -> Any:
        return self._kv_layout

    @property
    def eog_token_ids(self) -> frozenset[int]:
        return frozenset()

    # -- text -----------------------------------------------------------------------

    @property
    def bos_token(self) -> str:
        return ""

    @property
    def eos_token(self) -> str:
        return ""

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(text.encode())

    def piece(self, token_id: int) -> bytes:
        return bytes([token_id]) if token_id < 256 else b""

    # -- what tests inspect -----------------------------------------------------------

    @property
    def num_used_cells(self) -> int:
        return sum(cell is not None for cell in self.cells)

    @property
    def num_free_cells(self) -> int:
        return len(self.cells) - self.num_used_cells

    def slot_cells(self, slot: int) -> list[Cell]:
        """The slot's cells, by position."""
        held = [c for c in self.cells if c is not None and slot in c.slots]
        return sorted(held, key=lambda c: c.position)

    def slot_token_ids(self, slot: int) -> list[int]:
        return [cell.history[-1] for cell in self.slot_cells(slot)]

    def assert_holds(self, slot: int, token_ids: list[int]) -> None:
        """The slot sees exactly ``token_ids`` at positions 0..n-1, each cell computed
        from exactly that prefix (a shared cell from another history fails)."""
        cells = self.slot_cells(slot)
        positions = [c.position for c in cells]
        if positions != list(range(len(token_ids))):
            raise AssertionError(
                f"slot {slot} holds positions {positions}, expected 0..{len(token_ids) - 1}"
            )
        for cell in cells:
            expected = tuple(token_ids[: cell.position + 1])
            if cell.history != expected:
                raise AssertionError(
                    f"slot {slot} cell at position {cell.position} was computed from "
                    f"{list(cell.history)}, the sequence has {list(expected)}"
                )

    # -- compute ----------------------------------------------------------------------

    def decode(self, batch: DecodeBatch) -> FloatMatrix:
        num_tokens = len(batch.token_ids)
        if not 0 < num_tokens <= self._max_num_batched_tokens:
            raise FakeBackendMisuse(f"batch of {num_tokens} tokens")
        self._check_positions(batch)
        if not self._has_room(batch):
            self.num_refused += 1
            raise KvCacheFull(f"no KV cells for {num_tokens} tokens")
        self.batches.append(batch)
        seen = {int(s): self.slot_token_ids(int(s)) for s in set(batch.slots.tolist())}
        rows = []
        for token, position, slot, is_output in zip(
            batch.token_ids.tolist(),
            batch.positions.tolist(),
            batch.slots.tolist(),
            batch.is_output.tolist(),
            strict=True,
        ):
            seen[slot].append(token)
            self.cells[self._free_cell(slot)] = Cell(position, tuple(seen[slot]), {slot})
            if is_output:
                rows.append(next_token(seen[slot], self._vocab_size))
        logits = np.zeros((len(rows), self._vocab_size), dtype=np.float32)
        logits[np.arange(len(rows)), rows] = 1.0
        self.last_logits = logits
        return logits

    def _region(self, slot: int) -> range:
        """The cells a slot's tokens may take: all, or its own stream."""
        if self._kv_layout == "per_seq":
            return range(slot * self.stream_size, (slot + 1) * self.stream_size)
        return range(len(self.cells))

    def _free_cell(self, slot: int) -> int:
        return next(i for i in self._region(slot) if self.cells[i] is None)

    def _has_room(self, batch: DecodeBatch) -> bool:
        if self._kv_layout != "per_seq":
            return len(batch.token_ids) <= self.num_free_cells
        slots = batch.slots.tolist()
        if slots != sorted(slots):
            raise FakeBackendMisuse(f"per-sequence batch lists its slots out of order: {slots}")
        for slot in set(slots):
            free = sum(self.cells[i] is None for i in self._region(slot))
            if slots.count(slot) > free:
                return False
        return True

    def new_grammar(self, gbnf: str) -> Any:
        raise NotImplementedError("grammars are tested on llama.cpp")

    def embed(self, batch: DecodeBatch) -> FloatMatrix:
        """Row i: the i-th token's next token, one-hot over 8 dims (deterministic)."""
        logits = self.decode(batch._replace(is_output=np.ones_like(batch.is_output)))
        rows = np.zeros((len(logits), 8), dtype=np.float32)
        rows[np.arange(len(logits)), logits.argmax(axis=1) % 8] = 3.0
        return rows

    def _check_positions(self, batch: DecodeBatch) -> None:
        next_position: dict[int, int] = {}
        for token, position, slot in zip(
            batch.token_ids.tolist(), batch.positions.tolist(), batch.slots.tolist(), strict=True
        ):
            if not 0 <= slot < self._num_slots or not 0 <= token < self._vocab_size:
                raise FakeBackendMisuse(f"token {token} for slot {slot}")
            if slot not in next_position:
                held = self.slot_positions(slot)
                next_position[slot] = 0 if held is None else held[1] + 1
            if position != next_position[slot]:
                raise FakeBackendMisuse(
                    f"slot {slot} decodes position {position}, expected {next_position[slot]}"
                )
            next_position[slot] += 1

    def remove(self, slot: int, start: int = 0) -> None:
        for i, cell in enumerate(self.cells):
            if cell is not None and cell.position >= start:
                cell.slots.discard(slot)
                if not cell.slots:
                    self.cells[i] = None

    def copy_prefix(self, src_slot: int, dst_slot: int, num_tokens: int) -> None:
        if self.slot_positions(dst_slot) is not None:
            raise FakeBackendMisuse(f"copy into slot {dst_slot}, which holds cells")
        cells = [c for c in self.slot_cells(src_slot) if c.position < num_tokens]
        if [c.position for c in cells] != list(range(num_tokens)):
            raise FakeBackendMisuse(f"slot {src_slot} lacks some of positions < {num_tokens}")
        if self._kv_layout == "per_seq":
            for cell in cells:
                copy = Cell(cell.position, cell.history, {dst_slot})
                self.cells[self._free_cell(dst_slot)] = copy
            return
        for cell in cells:
            cell.slots.add(dst_slot)

    def can_reuse_prefix(self, slot: int, num_tokens: int) -> bool:
        if slot in self.unreusable_slots:
            return False
        held = self.slot_positions(slot)
        window = self.sliding_window
        return window is None or (held is not None and held[1] + 1 - num_tokens < window)

    def slot_positions(self, slot: int) -> tuple[int, int] | None:
        positions = [c.position for c in self.cells if c is not None and slot in c.slots]
        return (min(positions), max(positions)) if positions else None

    def new_sampler(self, params: SamplingParams, seed: int) -> GreedySampler:
        return GreedySampler(self)

    def close(self) -> None:
        self.is_closed = True
