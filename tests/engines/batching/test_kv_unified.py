"""UnifiedKv's cell estimate against the fake's true cell count."""

from __future__ import annotations

import random

import numpy as np
import pytest
from fake_backend import FakeBackend

from llmport.engines.batching.backend import DecodeBatch, KvCacheFull
from llmport.engines.batching.kv import UnifiedKv


def extend(kv: UnifiedKv, slot: int, token_ids: list[int]) -> None:
    """Compute ``token_ids`` after the slot's tokens, as the engine's step does."""
    start = kv.num_tokens(slot)
    num_tokens = len(token_ids)
    kv.backend.decode(
        DecodeBatch(
            np.array(token_ids, dtype=np.int32),
            np.arange(start, start + num_tokens, dtype=np.int32),
            np.full(num_tokens, slot, dtype=np.int32),
            np.zeros(num_tokens, dtype=np.int8),
        )
    )
    kv.append(slot, num_tokens)


def check(kv: UnifiedKv, backend: FakeBackend, contents: dict[int, list[int]]) -> None:
    assert kv.num_used_cells >= backend.num_used_cells
    assert sorted(kv._num_tokens) == sorted(contents)
    for slot, token_ids in contents.items():
        assert kv.num_tokens(slot) == len(token_ids)
        backend.assert_holds(slot, token_ids)
    for slot in set(range(backend.num_slots)) - set(contents):
        assert backend.slot_positions(slot) is None


def random_walk(seed: int, *, allow_sharing: bool, num_ops: int = 300) -> None:
    rng = random.Random(seed)
    backend = FakeBackend(num_kv_tokens=200, num_slots=6, max_num_batched_tokens=32)
    kv = UnifiedKv(backend)
    contents: dict[int, list[int]] = {}
    for _ in range(num_ops):
        op = rng.choice(["allocate", "copy", "extend", "extend", "truncate", "free"])
        slots = sorted(contents)
        if op == "allocate" or (op == "copy" and not allow_sharing):
            slot = kv.allocate()
            if slot is not None:
                contents[slot] = []
        elif op == "copy" and slots:
            src = rng.choice(slots)
            dst = kv.allocate()
            if dst is not None:
                num_tokens = rng.randint(0, len(contents[src]))
                kv.share_prefix(src, dst, num_tokens)
                contents[dst] = contents[src][:num_tokens]
        elif op == "extend" and slots:
            slot = rng.choice(slots)
            token_ids = [rng.randrange(4) for _ in range(rng.randint(1, 32))]
            try:
                extend(kv, slot, token_ids)
            except KvCacheFull:
                assert kv.num_free_cells < len(token_ids)
                continue
            contents[slot] += token_ids
        elif op == "truncate" and slots:
            slot = rng.choice(slots)
            num_tokens = rng.randint(0, len(contents[slot]))
            kv.truncate(slot, num_tokens)
            del contents[slot][num_tokens:]
        elif op == "free" and slots:
            slot = rng.choice(slots)
            kv.free(slot)
            del contents[slot]
        check(kv, backend, contents)
        if not allow_sharing:
            assert kv.num_used_cells == backend.num_used_cells
    for slot in list(contents):
        kv.free(slot)
    assert backend.num_used_cells == kv.num_used_cells == 0
    assert kv.num_free_slots == backend.num_slots


@pytest.mark.parametrize("seed", range(12))
def test_estimate_never_underestimates_with_sharing(seed: int) -> None:
    random_walk(seed, allow_sharing=True)


@pytest.mark.parametrize("seed", range(4))
def test_estimate_is_exact_without_sharing(seed: int) -> None:
    random_walk(seed, allow_sharing=False)


def test_slots_are_recycled_and_run_out() -> None:
    backend = FakeBackend(num_slots=3)
    kv = UnifiedKv(backend)
    slots = [kv.allocate() for _ in range(3)]
    assert sorted(s for s in slots if s is not None) == [0, 1, 2]
    assert kv.allocate() is None
    assert kv.num_free_slots == 0
    kv.free(1)
    assert kv.allocate() == 1
    assert kv.allocate() is None


def test_freed_slot_starts_empty() -> None:
    backend = FakeBackend()
    kv = UnifiedKv(backend)
    slot = kv.allocate()
    assert slot is not None
    extend(kv, slot, [1, 2, 3])
    kv.free(slot)
    again = kv.allocate()
    assert again == slot
    assert kv.num_tokens(again) == 0
    assert backend.slot_positions(again) is None
    extend(kv, again, [4, 5])
    backend.assert_holds(again, [4, 5])


def test_freeing_a_parent_keeps_its_childrens_cells() -> None:
    backend = FakeBackend()
    kv = UnifiedKv(backend)
    parent, child, grandchild = kv.allocate(), kv.allocate(), kv.allocate()
    assert parent is not None and child is not None and grandchild is not None
    extend(kv, parent, list(range(10)))
    kv.share_prefix(parent, child, 8)
    extend(kv, child, [20, 21])
    kv.share_prefix(child, grandchild, 9)
    assert backend.num_used_cells == kv.num_used_cells == 12

    kv.free(parent)
    backend.assert_holds(child, [0, 1, 2, 3, 4, 5, 6, 7, 20, 21])
    backend.assert_holds(grandchild, [0, 1, 2, 3, 4, 5, 6, 7, 20])
    assert backend.num_used_cells == kv.num_used_cells == 10

    kv.free(child)
    backend.assert_holds(grandchild, [0, 1, 2, 3, 4, 5, 6, 7, 20])
    assert backend.num_used_cells == kv.num_used_cells == 9
    kv.free(grandchild)
    assert backend.num_used_cells == kv.num_used_cells == 0


def test_truncating_a_parent_moves_cells_to_the_child() -> None:
    backend = FakeBackend()
    kv = UnifiedKv(backend)
    parent, child = kv.allocate(), kv.allocate()
    assert parent is not None and child is not None
    extend(kv, parent, list(range(10)))
    kv.share_prefix(parent, child, 10)
    kv.truncate(parent, 4)
    assert backend.num_used_cells == kv.num_used_cells == 10
    extend(kv, parent, [50, 51])
    backend.assert_holds(parent, [0, 1, 2, 3, 50, 51])
    backend.assert_holds(child, list(range(10)))
    assert backend.num_used_cells == kv.num_used_cells == 12
