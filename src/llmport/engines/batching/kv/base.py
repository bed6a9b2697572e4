"""The KV policy the scheduler asks: which slots are free, and how many tokens fit where.

llama.cpp's cache comes in two layouts with different capacity rules: one unified
pool of cells that every slot draws from (``unified.py``), or one fixed stream per
slot (``per_seq.py``). The scheduler plans a step without doing cell arithmetic:
``begin_plan`` opens a step, ``room`` / ``can_append`` say what still fits,
``plan`` books it, and ``append`` records what the forward pass computed.

Slots are handed out lowest id first: with per-sequence streams llama.cpp batches
the sequences of consecutive slots together, so a dense range keeps decodes in one
micro-batch. A running sequence takes only a slot below ``num_run_slots``; a spare slot
(``is_spare``) may hold a cached prefix of its own, copied from a running sequence.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from typing import ClassVar

from llmport.engines.batching.backend import Backend


class KvPolicy(ABC):
    """Slot allocation and the capacity estimate; mutates llama.cpp memory via the backend.

    The estimate may overcount what llama.cpp uses (safe: the scheduler evicts or
    preempts a little early), never undercount; llama.cpp's own refusal
    (``KvCacheFull``) is the backstop.
    """

    layout: ClassVar[str]
    #: llama.cpp puts only consecutive slots' tokens in one micro-batch (per-sequence
    #: streams), so where a new sequence runs decides how many forward passes a step takes.
    packs_slots: ClassVar[bool] = False
    #: The shortest prefix worth sharing into a new slot: per sequence a share copies a
    #: whole stream, which a prompt's first few tokens (often only <bos>) do not repay.
    min_shared_prefix: ClassVar[int] = 1

    def __init__(self, backend: Backend, num_run_slots: int | None = None) -> None:
        """``num_run_slots``: the lowest slots, where sequences run (default: all)."""
        self.backend = backend
        self.num_run_slots = min(backend.num_slots, num_run_slots or backend.num_slots)
        self._free_slots = list(range(backend.num_slots))
        self._num_tokens: dict[int, int] = {}
        self._planned: dict[int | None, int] = {}

    # -- slots -------------------------------------------------------------------

    @property
    def num_slots(self) -> int:
        return self.backend.num_slots

    @property
    def num_free_slots(self) -> int:
        return len(self._free_slots)

    def num_tokens(self, slot: int) -> int:
        return self._num_tokens[slot]

    def can_run_in(self, slot: int) -> bool:
        return slot < self.num_run_slots

    @abstractmethod
    def is_spare(self, slot: int) -> bool:
        """The slot may hold a prefix copied for the cache alone (``allocate_spare``)."""

    def can_allocate(self) -> bool:
        """A new sequence could start now: a free slot and room for its first token."""
        has_slot = bool(self._free_slots) and self.can_run_in(self._free_slots[0])
        return has_slot and self.room() >= 1

    @property
    def free_run_slots(self) -> list[int]:
        """Free slots a sequence may run in, lowest first."""
        return sorted(slot for slot in self._free_slots if self.can_run_in(slot))

    def allocate(self, slot: int | None = None) -> int | None:
        """A free slot a sequence may run in (``slot``, else the lowest), empty; None when
        there is none."""
        if slot is not None:
            assert slot in self._free_slots and self.can_run_in(slot)
            return self._take_free(slot)
        if not self._free_slots or not self.can_run_in(self._free_slots[0]):
            return None
        return self._take(heapq.heappop(self._free_slots))

    def allocate_spare(self) -> int | None:
        """The highest free spare slot, empty, for a cached prefix; None when none is free."""
        spare = [slot for slot in self._free_slots if self.is_spare(slot)]
        if not spare:
            return None
        return self._take_free(max(spare))

    def _take_free(self, slot: int) -> int:
        self._free_slots.remove(slot)
        heapq.heapify(self._free_slots)
        return self._take(slot)

    def _take(self, slot: int) -> int:
        self._num_tokens[slot] = 0
        return slot

    def free(self, slot: int) -> None:
        """Drop the slot's tokens (cells another slot shares survive there)."""
        self.backend.remove(slot)
        del self._num_tokens[slot]
        heapq.heappush(self._free_slots, slot)

    def truncate(self, slot: int, num_tokens: int) -> None:
        """Keep the slot's first ``num_tokens`` tokens."""
        if num_tokens < self._num_tokens[slot]:
            self.backend.remove(slot, num_tokens)
            self._num_tokens[slot] = num_tokens

    def share_prefix(self, src: int, dst: int, num_tokens: int) -> None:
        """Give the empty slot ``dst`` the first ``num_tokens`` tokens of ``src``."""
        self.backend.copy_prefix(src, dst, num_tokens)
        self._num_tokens[dst] = num_tokens

    def move(self, src: int, dst: int) -> None:
        """Move the tokens of slot ``src`` into the free slot ``dst``; ``src`` is free after.
        (Per sequence, llama.cpp copies the whole stream at the next decode, before the
        batch that may already write into ``src``.)"""
        self._take_free(dst)
        self.share_prefix(src, dst, self._num_tokens[src])
        self.free(src)

    def append(self, slot: int, num_tokens: int) -> None:
        """The forward pass computed ``num_tokens`` more tokens of the slot."""
        self._num_tokens[slot] += num_tokens

    # -- planning one step ----------------------------------------------------------

    def begin_plan(self) -> None:
        self._planned.clear()

    def plan(self, slot: int, num_tokens: int) -> None:
        """Book ``num_tokens`` tokens of ``slot`` for the step being planned."""
        self._planned[slot] = self._planned.get(slot, 0) + num_tokens

    def can_append(self, slot: int, num_tokens: int) -> bool:
        return num_tokens <= self.room(slot)

    @abstractmethod
    def room(self, slot: int | None = None) -> int:
        """Tokens that still fit for ``slot`` in the step being planned (None: a new one)."""

    # -- sizes ---------------------------------------------------------------------------

    @abstractmethod
    def num_cache_slots(self, max_num_seqs: int) -> int:
        """How many slots may hold finished sequences' KV as cached prefixes."""

    @property
    @abstractmethod
    def num_cells(self) -> int: ...

    @property
    @abstractmethod
    def num_used_cells(self) -> int: ...
