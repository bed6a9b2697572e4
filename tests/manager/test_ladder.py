"""The eviction ladder (sleep level 1, then level 2, then exit) over the fake engine,
which sleeps and wakes as vLLM's sleep mode does: the real sleep mode needs a GPU."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakes import FakeConfig, FakeEngine, FakeRuntime, MiB, fake_spec, run_manager
from test_manager_seams import generate

from llmport.engine.registry import MemoryEstimate
from llmport.errors import ModelLoadFailed
from llmport.manager.eviction import Eviction, needs_room, next_eviction
from llmport.manager.loaded import LoadedModel
from llmport.manager.manager import ModelManager
from llmport.manager.settings import ManagerSettings


def run(body: Any, budget_bytes: int, sleep_levels: tuple[int, ...] = (1, 2)) -> FakeRuntime:
    configs = {"fake": FakeConfig(sleep_levels=sleep_levels)}
    return run_manager(body, budget_bytes, ManagerSettings(max_loaded_models=0), configs)


def engine_of(runtime: FakeRuntime, name: str) -> FakeEngine:
    return next(e for e in runtime.engines if e.target.weight_files[0].endswith(name))


def states(manager: ModelManager) -> dict[str, int]:
    return {m.name: m.sleep_level for m in manager.loaded()}


def test_idle_models_sleep_at_level_1_before_any_sleeps_deeper() -> None:
    """Each model holds 110 MiB awake (100 of weights, 10 of KV), 100 at level 1 (one
    budget for all memory: the weights moved to host memory still count) and 0 at level 2
    (the fake's estimate has no worker overhead)."""

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        for name in "abc":
            await generate(manager, fake_spec(name))
        assert states(manager) == {"a": 0, "b": 0, "c": 0}  # 330 of 330.
        await generate(manager, fake_spec("d"))  # Room for 110: a, b, c to level 1, a to 2.
        assert states(manager) == {"a": 2, "b": 1, "c": 1, "d": 0}
        await generate(manager, fake_spec("e"))  # d to level 1, b to 2.
        assert states(manager) == {"a": 2, "b": 2, "c": 1, "d": 1, "e": 0}
        assert engine_of(runtime, "a").calls == [("sleep", 1), ("sleep", 2)]
        assert engine_of(runtime, "c").calls == [("sleep", 1)]
        assert len(runtime.engines) == 5 and not any(e.is_closed for e in runtime.engines)

    run(body, budget_bytes=330 * MiB)


def test_a_sleeping_model_wakes_for_its_next_request_and_others_make_room() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        a, b = fake_spec("a"), fake_spec("b")
        await generate(manager, a)
        await generate(manager, b)  # a sleeps at level 1 (100 + 110 <= 215).
        assert states(manager) == {"a": 1, "b": 0}
        assert await generate(manager, a) == "xxx"  # b sleeps, then a wakes (110 + 100).
        assert states(manager) == {"a": 0, "b": 1}
        assert engine_of(runtime, "a").calls == [("sleep", 1), ("wake", 1)]
        assert len(runtime.engines) == 2  # Woken, never reloaded.

    run(body, budget_bytes=215 * MiB)


def test_concurrent_requests_share_one_wake() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        a, b = fake_spec("a"), fake_spec("b")
        await generate(manager, a)
        await generate(manager, b)
        answers = await asyncio.gather(*(generate(manager, a) for _ in range(4)))
        assert answers == ["xxx"] * 4
        assert engine_of(runtime, "a").calls == [("sleep", 1), ("wake", 1)]

    run(body, budget_bytes=215 * MiB)


def test_engines_that_cannot_sleep_exit() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        a, b = fake_spec("a"), fake_spec("b")
        await generate(manager, a)
        await generate(manager, b)
        assert states(manager) == {"b": 0}
        assert engine_of(runtime, "a").is_closed and engine_of(runtime, "a").calls == []
        await generate(manager, a)  # Loaded again: a new engine.
        assert len(runtime.engines) == 3 and states(manager) == {"a": 0}

    run(body, budget_bytes=215 * MiB, sleep_levels=())


def test_a_failed_wake_unloads_the_model_and_the_next_request_loads_it() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        a, b = fake_spec("a"), fake_spec("b")
        await generate(manager, a)
        await generate(manager, b)
        engine_of(runtime, "a").fail_wake = True
        with pytest.raises(ModelLoadFailed, match="reload"):
            await generate(manager, a)
        assert "a" not in states(manager) and engine_of(runtime, "a").is_closed
        assert await generate(manager, a) == "xxx"
        assert len(runtime.engines) == 3

    run(body, budget_bytes=215 * MiB)


def loaded(name: str, last_used: float, level: int = 0, levels: tuple[int, ...] = (1, 2),
           num_active: int = 0) -> LoadedModel:  # fmt: skip
    engine: Any = None  # The ladder never touches the engine.
    return LoadedModel(spec=fake_spec(name), engine=engine,
                       memory=MemoryEstimate(100, 10, 5, 0, overhead_bytes=20),
                       load_seconds=0.0, keep_alive=300.0, last_used=last_used,
                       num_active=num_active, sleep_levels=levels, sleep_level=level)  # fmt: skip


def test_the_ladder_as_plain_objects() -> None:
    a, b = loaded("a", 1.0), loaded("b", 2.0)
    assert next_eviction([a, b], max_loaded=0) == Eviction(a, 1)
    a.sleep_level = 1
    assert a.resident_bytes == 120 and a.state == "sleeping"
    assert next_eviction([a, b], max_loaded=0) == Eviction(b, 1)  # Shallowest first.
    b.sleep_level = 1
    assert next_eviction([a, b], max_loaded=0) == Eviction(a, 2)
    a.sleep_level = 2
    assert a.resident_bytes == 20
    b.sleep_level = 2
    assert next_eviction([a, b], max_loaded=0) == Eviction(a, None)  # Then exit.
    assert next_eviction([a, b], max_loaded=2) == Eviction(a, None)  # Over the count.
    assert next_eviction([a, b], max_loaded=2, adds_model=False) == Eviction(a, None)
    busy = loaded("c", 0.0, num_active=1)
    assert next_eviction([busy], max_loaded=0) is None
    cannot = loaded("d", 0.0, levels=())
    assert next_eviction([cannot, b], max_loaded=0) == Eviction(cannot, None)
    assert not needs_room([a, b], 10, budget_bytes=50, max_loaded=2, adds_model=False)
    assert needs_room([a, b], 10, budget_bytes=50, max_loaded=2)
