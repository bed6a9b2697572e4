"""Which llama.cpp sequence slots are taken, and how many KV cells they use.

Slots share cells after ``copy_prefix`` (llama.cpp tags the same cells with
both sequence ids), so a slot counts only the cells past the prefix it
borrowed from its parent. The count may overestimate (safe: we evict or
preempt a little early), never underestimate; llama.cpp's own refusal
(``KvCacheFull``) is the backstop.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmport.engines.batching.backend import Backend


@dataclass
class _SlotState:
    num_tokens: int = 0
    parent: int | None = None
    num_shared: int = 0

    @property
    def num_own_cells(self) -> int:
        return self.num_tokens - self.num_shared


class KvCacheManager:
    """Owns slot allocation and the cell estimate; mutates llama.cpp memory via the backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.num_cells = backend.num_kv_tokens
        self._free_slots = list(range(backend.num_slots - 1, -1, -1))
        self._slots: dict[int, _SlotState] = {}

    @property
    def num_free_slots(self) -> int:
        return len(self._free_slots)

    @property
    def num_used_cells(self) -> int:
        return sum(state.num_own_cells for state in self._slots.values())

    @property
    def num_free_cells(self) -> int:
        return self.num_cells - self.num_used_cells

    def num_tokens(self, slot: int) -> int:
        return self._slots[slot].num_tokens

    def allocate(self) -> int | None:
        if not self._free_slots:
            return None
        slot = self._free_slots.pop()
        self._slots[slot] = _SlotState()
        return slot

    def free(self, slot: int) -> None:
        """Drop the slot's cells (shared ones survive in their other owners)."""
        self.backend.remove(slot)
        state = self._slots.pop(slot)
        for child in self._slots.values():
            if child.parent == slot:
                # What the child borrowed beyond our own borrowing is now its alone.
                child.parent = state.parent
                child.num_shared = min(child.num_shared, state.num_shared)
        self._free_slots.append(slot)

    def copy_prefix(self, src: int, dst: int, num_tokens: int) -> None:
        self.backend.copy_prefix(src, dst, num_tokens)
        self._slots[dst] = _SlotState(num_tokens=num_tokens, parent=src, num_shared=num_tokens)

    def truncate(self, slot: int, num_tokens: int) -> None:
        state = self._slots[slot]
        if num_tokens < state.num_tokens:
            self.backend.remove(slot, num_tokens)
            for child in self._slots.values():
                if child.parent == slot and child.num_shared > num_tokens:
                    child.num_shared = num_tokens
            state.num_tokens = num_tokens
            state.num_shared = min(state.num_shared, num_tokens)

    def extend(self, slot: int, num_tokens: int) -> None:
        self._slots[slot].num_tokens += num_tokens
