"""ModelManager with real llama.cpp workers (the local runtime) on tiny models."""

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
from llmport.engines.kinds import default_registry
from llmport.errors import InsufficientMemory, ModelNotFound, QueueFull
from llmport.manager.manager import ModelManager
from llmport.manager.settings import ManagerSettings
from llmport.models.resolver import Resolver
from llmport.runtime.client import WorkerProcess
from llmport.runtime.local import LocalRuntime
from llmport.types import Request, SamplingParams
from tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("manager-models")
    return [write_tiny_model(folder / f"m{seed}.gguf", seed=seed) for seed in (1, 2)]


class CountingRuntime(LocalRuntime):
    """The local runtime, counting the worker processes it starts (a load uses one)."""

    def __init__(self, warm_spare: bool) -> None:
        super().__init__(warm_spare)
        self.count = 0

    def _spawn(self) -> WorkerProcess:
        self.count += 1
        return super()._spawn()


def run(
    body: Callable[[ModelManager], Awaitable[Any]],
    *,
    runtime: LocalRuntime | None = None,
    budget_bytes: int = 1 << 40,
    **settings: Any,
) -> Any:
    async def main() -> Any:
        manager = ModelManager(
            ManagerSettings(**settings),
            default_registry(),
            runtime or LocalRuntime(warm_spare=False),
            engine_configs={"llama_cpp": EngineConfig(max_num_seqs=4)},
            budget_bytes=budget_bytes,
        )
        try:
            return await body(manager)
        finally:
            await manager.close()

    return asyncio.run(main())


async def generate(manager: ModelManager, name: str, keep_alive: float | None = None) -> str:
    spec = await Resolver(Path("/nonexistent")).resolve(name)
    async with manager.acquire(spec, keep_alive) as model:
        request = Request(request_id="", prompt="hi", params=SamplingParams(max_tokens=3))
        return "".join([o.text async for o in model.engine.generate(request)])


def test_concurrent_first_requests_share_one_load(paths: list[Path]) -> None:
    runtime = CountingRuntime(warm_spare=False)

    async def body(manager: ModelManager) -> None:
        await asyncio.gather(*(generate(manager, str(paths[0])) for _ in range(6)))
        assert len(manager.loaded()) == 1

    run(body, runtime=runtime)
    assert runtime.count == 1


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
        assert [m.spec.weight_files[0] for m in manager.loaded()] == [paths[1]]

    run(body, keep_alive="200ms")


def test_unknown_models_and_full_queues_are_refused(paths: list[Path]) -> None:
    async def body(manager: ModelManager) -> None:
        with pytest.raises(ModelNotFound):
            await generate(manager, "nothing-by-this-name")
        async with contextlib.AsyncExitStack() as stack:
            spec = await Resolver(Path("/nonexistent")).resolve(str(paths[0]))
            for _ in range(4 + 1):  # max_num_seqs + max_queue leases fill it.
                await stack.enter_async_context(manager.acquire(spec))
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


def test_warm_spare_is_used_for_the_next_load(paths: list[Path]) -> None:
    runtime = CountingRuntime(warm_spare=True)

    async def body(manager: ModelManager) -> None:
        manager.start_spare()
        assert runtime.count == 1
        await generate(manager, str(paths[0]))
        assert runtime.count == 2  # The spare loaded the model; a new spare waits.

    run(body, runtime=runtime)
