"""PrefixCache as a plain object over UnifiedKv and the fake backend."""

from __future__ import annotations

import numpy as np
from fake_backend import FakeBackend

from llmport.engines.batching.backend import DecodeBatch
from llmport.engines.batching.kv import UnifiedKv
from llmport.engines.batching.prefix_cache import PrefixCache, PrefixMatch


def make(max_num_entries: int = 4, num_slots: int = 8) -> tuple[FakeBackend, PrefixCache]:
    backend = FakeBackend(num_kv_tokens=256, num_slots=num_slots)
    return backend, PrefixCache(UnifiedKv(backend), max_num_entries)


def computed_slot(cache: PrefixCache, token_ids: list[int]) -> int:
    """A slot holding ``token_ids``, as a finished sequence leaves it."""
    slot = cache.kv.allocate()
    assert slot is not None
    num_tokens = len(token_ids)
    cache.kv.backend.decode(
        DecodeBatch(
            np.array(token_ids, dtype=np.int32),
            np.arange(num_tokens, dtype=np.int32),
            np.full(num_tokens, slot, dtype=np.int32),
            np.zeros(num_tokens, dtype=np.int8),
        )
    )
    cache.kv.append(slot, num_tokens)
    return slot


def cached(cache: PrefixCache, token_ids: list[int]) -> int:
    slot = computed_slot(cache, token_ids)
    cache.insert(slot, token_ids)
    return slot


def test_find_returns_the_longest_prefix_among_entries() -> None:
    _, cache = make()
    short = cached(cache, [1, 2, 3, 9])
    long = cached(cache, [1, 2, 3, 4, 5, 9])
    cached(cache, [7, 7, 7, 7, 7, 7, 7])
    assert cache.find([1, 2, 3, 4, 5, 6]) == PrefixMatch(long, 5)
    assert cache.find([1, 2, 3, 8]) in {PrefixMatch(short, 3), PrefixMatch(long, 3)}
    assert cache.find([1, 2, 3, 9, 9]) == PrefixMatch(short, 4)
    assert cache.find([5, 5]) is None
    assert cache.find([]) is None


def test_a_query_shorter_than_an_entry_matches_all_of_itself() -> None:
    _, cache = make()
    slot = cached(cache, [1, 2, 3, 4, 5])
    assert cache.find([1, 2, 3]) == PrefixMatch(slot, 3)


def test_find_considers_running_sequences() -> None:
    _, cache = make()
    entry = cached(cache, [1, 2, 3])
    running = computed_slot(cache, [1, 2, 3, 4, 5])
    assert cache.find([1, 2, 3, 4, 6], [(running, [1, 2, 3, 4, 5])]) == PrefixMatch(running, 4)
    assert cache.find([1, 2, 7], [(running, [1, 2, 3, 4, 5])]) in {
        PrefixMatch(entry, 2),
        PrefixMatch(running, 2),
    }
    assert cache.slots == [entry]


def test_find_skips_slots_the_backend_cannot_reuse() -> None:
    backend, cache = make()
    short = cached(cache, [1, 2, 9])
    long = cached(cache, [1, 2, 3, 4])
    backend.unreusable_slots.add(long)
    assert cache.find([1, 2, 3, 4, 5]) == PrefixMatch(short, 2)


def test_eviction_is_least_recently_used_and_frees_cells() -> None:
    backend, cache = make(max_num_entries=3)
    a = cached(cache, [1, 1, 1])
    b = cached(cache, [2, 2, 2])
    c = cached(cache, [3, 3, 3])
    assert cache.slots == [a, b, c]
    d = cached(cache, [4, 4, 4])
    assert cache.slots == [b, c, d]
    assert backend.slot_positions(a) is None
    assert backend.num_used_cells == cache.kv.num_used_cells == 9
    assert cache.evict_one(keep=b)
    assert cache.slots == [b, d]
    assert backend.slot_positions(c) is None


def test_find_refreshes_recency() -> None:
    _, cache = make(max_num_entries=3)
    a = cached(cache, [1, 1, 1])
    b = cached(cache, [2, 2, 2])
    c = cached(cache, [3, 3, 3])
    assert cache.find([1, 1, 5]) == PrefixMatch(a, 2)
    assert cache.slots == [b, c, a]
    cached(cache, [4, 4, 4])
    assert b not in cache.slots
    assert a in cache.slots


def test_find_without_a_match_keeps_the_order() -> None:
    _, cache = make()
    a = cached(cache, [1, 1])
    b = cached(cache, [2, 2])
    assert cache.find([3, 3]) is None
    assert cache.slots == [a, b]


def test_take_forgets_the_entry_but_keeps_its_cells() -> None:
    backend, cache = make()
    a = cached(cache, [1, 2, 3])
    b = cached(cache, [4, 5, 6])
    cache.take(a)
    assert cache.slots == [b]
    backend.assert_holds(a, [1, 2, 3])
    cache.clear()
    backend.assert_holds(a, [1, 2, 3])
    assert backend.slot_positions(b) is None


def test_insert_with_caching_off_frees_the_slot() -> None:
    backend, cache = make(max_num_entries=0)
    slot = computed_slot(cache, [1, 2, 3])
    cache.insert(slot, [1, 2, 3])
    assert len(cache) == 0
    assert backend.num_used_cells == 0
    assert cache.kv.num_free_slots == backend.num_slots


def test_insert_of_an_empty_sequence_frees_the_slot() -> None:
    backend, cache = make()
    slot = cache.kv.allocate()
    assert slot is not None
    cache.insert(slot, [])
    assert len(cache) == 0
    assert cache.kv.num_free_slots == backend.num_slots


def test_clear_frees_every_cell_and_slot() -> None:
    backend, cache = make(max_num_entries=4)
    for i in range(4):
        cached(cache, [i] * 5)
    # An entry whose cells are shared with another entry: freeing both frees all.
    parent = cache.slots[0]
    child = cache.kv.allocate()
    assert child is not None
    cache.kv.share_prefix(parent, child, 3)
    taken = cache.slots[-1]
    cache.take(taken)  # makes room without evicting; the taker owns its 5 cells now
    cache.insert(child, [0, 0, 0])
    assert backend.num_used_cells == cache.kv.num_used_cells == 20
    cache.clear()
    assert len(cache) == 0
    assert not cache.evict_one()
    assert backend.num_used_cells == cache.kv.num_used_cells == 5
    cache.kv.free(taken)
    assert backend.num_used_cells == cache.kv.num_used_cells == 0
    assert cache.kv.num_free_slots == backend.num_slots


def test_clear_on_an_empty_cache_is_a_no_op() -> None:
    backend, cache = make()
    cache.clear()
    assert backend.num_used_cells == 0
