"""One pool of cells that every slot draws from (llama.cpp's ``kv_unified``).

A shared prefix costs nothing: ``share_prefix`` tags the same cells with both
sequence ids, so a slot counts only the cells past the prefix it borrowed. Every
token of every slot takes room from the same pool, and each token's attention
walks the whole pool's mask, so the cost grows with the sum of the sequences'
lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmport.engines.batching.backend import Backend
from llmport.engines.batching.kv.base import KvPolicy


@dataclass
class _Borrowing:
    parent: int | None = None
    num_shared: int = 0


class UnifiedKv(KvPolicy):
    layout = "unified"

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self._borrowed: dict[int, _Borrowing] = {}

    @property
    def num_cells(self) -> int:
        return self.backend.num_kv_tokens

    @property
    def num_used_cells(self) -> int:
        return sum(
            tokens - self._borrowed.get(slot, _Borrowing()).num_shared
            for slot, tokens in self._num_tokens.items()
        )

    @property
    def num_free_cells(self) -> int:
        return self.num_cells - self.num_used_cells

    def is_spare(self, slot: int) -> bool:
        return True  # One pool: where a slot's cells are does not matter.

    def num_cache_slots(self, max_num_seqs: int) -> int:
        # Sequence ids cost nothing here: the cache gets the slots beyond the running ones.
        return max(0, self.num_slots - max_num_seqs)

    def room(self, slot: int | None = None) -> int:
        return self.num_free_cells - sum(self._planned.values())

    def free(self, slot: int) -> None:
        super().free(slot)
        gone = self._borrowed.pop(slot, _Borrowing())
        for child in self._borrowed.values():
            if child.parent == slot:
                # What the child borrowed beyond our own borrowing is now its alone.
                child.parent = gone.parent
                child.num_shared = min(child.num_shared, gone.num_shared)

    def truncate(self, slot: int, num_tokens: int) -> None:
        super().truncate(slot, num_tokens)
        for child in self._borrowed.values():
            if child.parent == slot and child.num_shared > num_tokens:
                child.num_shared = num_tokens
        own = self._borrowed.get(slot)
        if own is not None:
            own.num_shared = min(own.num_shared, num_tokens)

    def share_prefix(self, src: int, dst: int, num_tokens: int) -> None:
        super().share_prefix(src, dst, num_tokens)
        self._borrowed[dst] = _Borrowing(parent=src, num_shared=num_tokens)
