"""The manager over a fake engine kind (its own memory estimate) started by a fake
runtime: loading, eviction, keep-alive, queues and crashes take the same code paths as
llama.cpp's, so a second engine or runtime plugs in without edits above the seams."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fakes import FakeRuntime, MiB, fake_spec, load_failure, run_manager

from llmport.errors import (
    InsufficientMemory,
    ModelLoadFailed,
    QueueFull,
    ServerShuttingDown,
    WorkerCrashed,
)
from llmport.manager.manager import ModelManager
from llmport.manager.settings import ManagerSettings
from llmport.models.spec import ModelSpec
from llmport.types import Request, SamplingParams


def run(
    body: Callable[[ModelManager, FakeRuntime], Awaitable[Any]],
    budget_bytes: int = 1 << 40,
    **settings: Any,
) -> FakeRuntime:
    return run_manager(body, budget_bytes, ManagerSettings(**settings))


async def generate(
    manager: ModelManager, spec: ModelSpec, keep_alive: float | None = None, tokens: int = 3
) -> str:
    async with manager.acquire(spec, keep_alive) as model:
        request = Request(request_id="r", prompt="hi", params=SamplingParams(max_tokens=tokens))
        return "".join([o.text async for o in model.engine.generate(request)])


def test_the_fake_kind_is_planned_and_started_through_the_registry_and_runtime() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        manager.start_spare()
        assert runtime.num_prepared == 1
        results = await asyncio.gather(*(generate(manager, fake_spec("a")) for _ in range(6)))
        assert results == ["xxx"] * 6
        (model,) = manager.loaded()
        assert model.memory.total_bytes == 110 * MiB  # The kind's own estimate.
        assert model.engine.info.kind == "fake" and model.max_model_len == 4096

    runtime = run(body)
    assert len(runtime.engines) == 1  # Six first requests shared one load.
    assert runtime.is_closed and runtime.engines[0].is_closed


def test_a_budget_for_one_evicts_the_least_recently_used_idle_model() -> None:
    a, b, c = fake_spec("a"), fake_spec("b"), fake_spec("c", size=50 * MiB)

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        await generate(manager, a)
        await generate(manager, b)  # a leaves for b.
        assert [m.name for m in manager.loaded()] == ["b"]
        assert runtime.engines[0].is_closed
        await generate(manager, c)  # b and c fit together (110 + 60 <= 200).
        assert {m.name for m in manager.loaded()} == {"b", "c"}

    run(body, budget_bytes=200 * MiB, max_loaded_models=0)  # a and b: 220.


def test_a_swap_overlaps_the_old_workers_exit_when_only_the_count_is_full() -> None:
    a, b = fake_spec("a"), fake_spec("b")

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        runtime.exit_seconds = 0.2
        await generate(manager, a)
        await generate(manager, b)  # a leaves for b (one model at a time)
        # b loaded and answered while a's worker was still exiting.
        assert [event.split()[0] for event in runtime.events] == ["loading", "loading"]
        assert [m.name for m in manager.loaded()] == ["b"]
        await asyncio.sleep(0.3)
        assert [event.split()[0] for event in runtime.events][-1] == "exited"

    run(body, max_loaded_models=1)


def test_a_swap_waits_for_the_old_workers_exit_when_memory_is_short() -> None:
    a, b = fake_spec("a"), fake_spec("b")

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        runtime.exit_seconds = 0.2
        await generate(manager, a)
        await generate(manager, b)  # 110 MiB each in a budget of 200: a must be gone
        names = [event.split()[0] for event in runtime.events]
        assert names == ["loading", "exited", "loading"]

    run(body, budget_bytes=200 * MiB, max_loaded_models=0)


def test_keep_alive_zero_and_the_timer_unload_and_a_request_cancels_the_timer() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        await generate(manager, fake_spec("a"), keep_alive=0)
        await asyncio.sleep(0.05)
        assert not manager.loaded()
        await generate(manager, fake_spec("b"))
        (model,) = manager.loaded()
        assert model.expires_at is not None
        await generate(manager, fake_spec("b"))  # Used again: the timer starts over.
        await generate(manager, fake_spec("c"), keep_alive=math.inf)
        await asyncio.sleep(0.4)
        assert [m.name for m in manager.loaded()] == ["c"]

    run(body, keep_alive="200ms")


def test_a_full_queue_is_refused_and_room_comes_back() -> None:
    spec = fake_spec("a")

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2 + 1):  # The kind's max_num_seqs (2) + max_queue (1).
                await stack.enter_async_context(manager.acquire(spec))
            with pytest.raises(QueueFull) as caught:
                await generate(manager, spec)
            assert caught.value.retry_after >= 1
        assert await generate(manager, spec) == "xxx"

    run(body, max_queue=1)


def test_a_crash_fails_only_that_models_streams_and_the_next_request_restarts_it() -> None:
    a, b = fake_spec("a"), fake_spec("b")

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        await generate(manager, b)
        doomed = asyncio.create_task(generate(manager, a, tokens=10_000))
        survivor = asyncio.create_task(generate(manager, b, tokens=200))
        await asyncio.sleep(0.05)
        runtime.engines[1].crash()
        with pytest.raises(WorkerCrashed, match="SIGKILL"):
            await doomed
        assert await survivor == "x" * 200
        assert await generate(manager, a) == "xxx"
        assert len(runtime.engines) == 3  # b, a, and a again.

    run(body, max_loaded_models=0)


def test_load_failures_and_impossible_sizes_are_reported() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        runtime.fail_next = load_failure()
        with pytest.raises(ModelLoadFailed):
            await generate(manager, fake_spec("a"))
        assert await generate(manager, fake_spec("a")) == "xxx"  # The next try loads.
        with pytest.raises(InsufficientMemory, match="budget"):
            await generate(manager, fake_spec("huge", size=1 << 40))

    run(body, budget_bytes=500 * MiB)


def test_draining_refuses_new_leases_and_ends_running_requests() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        running = asyncio.create_task(generate(manager, fake_spec("a"), tokens=10_000))
        await asyncio.sleep(0.05)
        manager.drain()
        with pytest.raises(ServerShuttingDown):
            await generate(manager, fake_spec("a"))
        manager.end_requests()
        with pytest.raises(ServerShuttingDown):
            await running

    run(body)


def test_the_next_spare_is_prepared_once_nothing_loads_or_generates() -> None:
    """A spare's start beside a generating llama.cpp worker slows its steps several times
    over on a small machine: the runtime is asked only when the server is quiet."""
    a, b = fake_spec("a"), fake_spec("b")

    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        async with manager.acquire(a):
            assert runtime.num_prepared == 0  # Loaded and leased: busy.
            async with manager.acquire(b):
                pass
            assert runtime.num_prepared == 0  # b is idle, a is not.
        assert runtime.num_prepared == 1

    run(body)
