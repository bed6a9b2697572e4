"""ModelManager with real workers on tiny models, driven in-process."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from llmport.config import EngineConfig
from llmport.engine.client import WorkerProcess
from llmport.errors import InsufficientMemory, ModelNotFound, QueueFull
from llmport.manager.catalog import Catalog
from llmport.manager.manager import MIN_CONTEXT_TOKENS, ModelManager
from llmport.manager.settings import ManagerSettings
from llmport.store.gguf_info import read_gguf_info
from llmport.types import Request, SamplingParams
from tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("manager-models")
    return [write_tiny_model(folder / f"m{seed}.gguf", seed=seed) for seed in (1, 2)]


class CountingSpawner:
    """Counts worker processes started (a load uses one)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> WorkerProcess:
        self.count += 1
        return WorkerProcess()


def run(
    body: Callable[[ModelManager], Awaitable[Any]],
    *,
    spawner: Callable[[], WorkerProcess] = WorkerProcess,
    budget_bytes: int = 1 << 40,
    **settings: Any,
) -> Any:
    async def main() -> Any:
        manager = ModelManager(
            ManagerSettings(**{"warm_spare": False, **settings}),
            EngineConfig(max_num_seqs=4),
            Catalog(Path("/nonexistent"), {"alias": Path("/nonexistent.gguf")}),
            spawn_worker=spawner,
            budget_bytes=budget_bytes,
        )
        try:
            return await body(manager)
        finally:
            await manager.close()

    return asyncio.run(main())


async def generate(manager: ModelManager, name: str, keep_alive: float | None = None) -> str:
    async with manager.acquire(name, keep_alive) as model:
        request = Request(request_id="", prompt="hi", params=SamplingParams(max_tokens=3))
        return "".join([o.text async for o in model.engine.generate(request)])


def test_concurrent_first_requests_share_one_load(paths: list[Path]) -> None:
    spawner = CountingSpawner()

    async def body(manager: ModelManager) -> None:
        await asyncio.gather(*(generate(manager, str(paths[0])) for _ in range(6)))
        assert len(manager.loaded()) == 1

    run(body, spawner=spawner)
    assert spawner.count == 1


def test_keep_alive_zero_unloads_when_the_request_ends(paths: list[Path]) -> None:
    async def body(manager: ModelManager) -> None:
        await generate(manager, str(paths[0]), keep_alive=0)
        for _ in range(100):
            if not manager.loaded():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("still loaded")

    run(body)


def test_keep_alive_timer_unloads_an_idle_model_and_a_request_cancels_it(
    paths: list[Path],
) -> None:
    async def body(manager: ModelManager) -> None:
        await generate(manager, str(paths[0]))
        (model,) = manager.loaded()
        assert model.expires_at is not None
        await generate(manager, str(paths[1]), keep_alive=math.inf)
        await asyncio.sleep(0.5)
        assert [m.path for m in manager.loaded()] == [paths[1]]

    run(body, keep_alive="200ms")


def test_unknown_models_and_full_queues_are_refused(paths: list[Path]) -> None:
    async def body(manager: ModelManager) -> None:
        with pytest.raises(ModelNotFound):
            await generate(manager, "nothing-by-this-name")
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(4 + 1):  # max_num_seqs + max_queue leases fill it.
                await stack.enter_async_context(manager.acquire(str(paths[0])))
            with pytest.raises(QueueFull) as caught:
                await generate(manager, str(paths[0]))
            assert caught.value.retry_after >= 1
        await generate(manager, str(paths[0]))  # Room again once those ended.

    run(body, max_queue=1)


def test_a_model_too_big_for_the_budget_names_sizes(paths: list[Path]) -> None:
    async def body(manager: ModelManager) -> None:
        with pytest.raises(InsufficientMemory, match="budget"):
            await generate(manager, str(paths[0]))

    run(body, budget_bytes=1 << 20)


def test_max_loaded_models_evicts_the_idle_one(paths: list[Path]) -> None:
    async def body(manager: ModelManager) -> None:
        for path in [*paths, *paths]:
            await generate(manager, str(path))
            assert len(manager.loaded()) == 1

    run(body, max_loaded_models=1)


def test_a_crashed_worker_is_replaced_on_the_next_request(paths: list[Path]) -> None:
    async def body(manager: ModelManager) -> None:
        await generate(manager, str(paths[0]))
        (model,) = manager.loaded()
        assert model.engine.pid is not None
        os.kill(model.engine.pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert await generate(manager, str(paths[0])) is not None
        (again,) = manager.loaded()
        assert again.engine.pid != model.engine.pid

    run(body)


def test_context_defaults_to_trained_and_shrinks_only_for_the_budget(
    gemma_model_path: Path,
) -> None:
    info = read_gguf_info(gemma_model_path)

    def plan(budget: int, **config: Any) -> int:
        manager = ModelManager(
            ManagerSettings(),
            EngineConfig(**config),
            Catalog(Path("/nonexistent")),
            budget_bytes=budget,
        )
        planned, _ = manager.plan(info)
        assert planned.max_model_len is not None
        return planned.max_model_len

    assert plan(1 << 40) == info.context_length == 32768
    capped = plan(600 << 20)
    assert MIN_CONTEXT_TOKENS <= capped < 32768
    assert plan(1 << 40, max_model_len=8192) == 8192


def test_warm_spare_is_used_for_the_next_load(paths: list[Path]) -> None:
    spawner = CountingSpawner()

    async def body(manager: ModelManager) -> None:
        manager.start_spare()
        assert spawner.count == 1
        await generate(manager, str(paths[0]))
        assert spawner.count == 2  # The spare loaded the model; a new spare waits.

    run(body, spawner=spawner, warm_spare=True)
