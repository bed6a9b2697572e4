"""Finished sequences' KV kept for reuse, and longest-prefix lookup.

An entry is a slot whose cells hold ``token_ids`` at positions 0..n-1. A new
prompt copies the longest matching prefix from an entry (or from a running
sequence) instead of prefilling it. Entries are evicted least recently used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from llmport.engines.batching.kv import KvPolicy


class PrefixMatch(NamedTuple):
    slot: int
    num_tokens: int


class PrefixCache:
    """LRU of cached slots. Not thread-safe: the engine loop owns it."""

    def __init__(self, kv: KvPolicy, max_num_entries: int) -> None:
        self.kv = kv
        self.max_num_entries = max_num_entries
        self._entries: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def slots(self) -> list[int]:
        return list(self._entries)

    def token_ids(self, slot: int) -> list[int]:
        return [int(t) for t in self._entries[slot]]

    def insert(self, slot: int, token_ids: list[int]) -> None:
        """Take ownership of a finished sequence's slot (or free it when caching is off)."""
        if self.max_num_entries == 0 or not token_ids:
            self.kv.free(slot)
            return
        self._entries[slot] = np.asarray(token_ids, dtype=np.int32)
        while len(self._entries) > self.max_num_entries:
            self.evict_one()

    def find(
        self, token_ids: list[int], running: Iterable[tuple[int, list[int]]] = ()
    ) -> PrefixMatch | None:
        """Longest usable prefix of ``token_ids`` among entries and running (slot, tokens),
        if it is at least the policy's ``min_shared_prefix`` (sharing only <bos> would copy
        a stream per sequence, and touch that entry in the LRU)."""
        query = np.asarray(token_ids, dtype=np.int32)
        best: PrefixMatch | None = None
        candidates = [*self._entries.items(), *((s, np.asarray(t, np.int32)) for s, t in running)]
        for slot, cached in candidates:
            length = common_prefix_len(query, cached)
            is_longer = length >= self.kv.min_shared_prefix and (
                best is None or length > best.num_tokens
            )
            if is_longer and self.kv.backend.can_reuse_prefix(slot, length):
                best = PrefixMatch(slot, length)
        if best is not None and best.slot in self._entries:
            self._entries.move_to_end(best.slot)
        return best

    def covers(self, token_ids: list[int]) -> bool:
        """An entry already holds all of ``token_ids``, reusable."""
        query = np.asarray(token_ids, dtype=np.int32)
        return any(
            common_prefix_len(query, cached) == len(query)
            and self.kv.backend.can_reuse_prefix(slot, len(query))
            for slot, cached in self._entries.items()
        )

    def move(self, src: int, dst: int) -> None:
        """Move the entry in ``src`` to the free slot ``dst``, keeping its place in the LRU."""
        self.kv.move(src, dst)
        self._entries = OrderedDict(
            (dst if slot == src else slot, tokens) for slot, tokens in self._entries.items()
        )

    def take(self, slot: int) -> None:
        """Hand an entry's slot to a sequence (it keeps the cells, the cache forgets them)."""
        del self._entries[slot]

    def evict_one(
        self, keep: int | None = None, where: Callable[[int], bool] | None = None
    ) -> bool:
        """Free the least recently used entry other than ``keep`` (among the slots that
        ``where`` accepts); False if there is none."""
        for slot in self._entries:
            if slot != keep and (where is None or where(slot)):
                del self._entries[slot]
                self.kv.free(slot)
                return True
        return False

    def clear(self) -> None:
        while self.evict_one():
            pass


def common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens two token arrays share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    mismatch = np.flatnonzero(a[:n] != b[:n])
    return int(mismatch[0]) if len(mismatch) else n
