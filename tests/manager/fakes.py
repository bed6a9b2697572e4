"""A second engine kind and a second runtime, both fake: the manager serves them through
the same code paths as llama.cpp's kind and the local runtime. Its tests are the proof
that another engine or runtime plugs in without edits above the seams."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmport.engine.protocol import EngineInfo, EngineStats, WorkerEngine
from llmport.engine.registry import EngineKind, LoadTarget, MemoryEstimate, Plan
from llmport.errors import EngineDead, LlmportError, ModelLoadFailed, WorkerCrashed
from llmport.models.spec import ModelSpec
from llmport.runtime.base import LOCAL_NODE, Node
from llmport.store.registry import ModelFile, ModelRecord
from llmport.types import FinishReason, Output, Request, Usage

MiB = 1 << 20


def fake_spec(name: str, size: int = 100 * MiB) -> ModelSpec:
    """A model of the fake kind's format whose weights are ``size`` bytes."""
    path = f"/fake/{name}"
    record = ModelRecord(
        name=name,
        source="fake",
        files=[ModelFile(path, "0" * 64, size)],
        metadata={"architecture": "fake", "context_length": 4096},
    )
    return ModelSpec(name=name, format="hf", weight_files=(Path(path),), source="fake",
                     record=record)  # fmt: skip


class FakeConfig(BaseModel):
    max_num_seqs: int = 2
    max_model_len: int | None = None
    #: vLLM on a GPU offers (1, 2); an engine that can only exit, ().
    sleep_levels: tuple[int, ...] = ()


def plan_fake(spec: ModelSpec, config: FakeConfig, budget_bytes: int) -> Plan:
    """Its own estimate: the weights' size, a fixed KV, no worker overhead."""
    memory = MemoryEstimate(spec.record.size, 10 * MiB, 0, 4096, overhead_bytes=0)
    return Plan(config.model_copy(update={"max_model_len": 4096}), memory)


def create_fake(target: LoadTarget, config: Any) -> WorkerEngine:
    raise AssertionError("a fake runtime never runs a worker")


FAKE_KIND = EngineKind(
    name="fake",
    formats=frozenset({"hf"}),
    config_class=FakeConfig,
    plan=plan_fake,  # type: ignore[arg-type]
    create=create_fake,
)


class FakeEngine:
    """An EngineClient that answers every prompt with ``max_tokens`` pieces of "x"; it
    sleeps and wakes as vLLM's sleep mode does (and refuses to generate asleep)."""

    _pids = itertools.count(1000)

    def __init__(self, target: LoadTarget, config: FakeConfig) -> None:
        self.target = target
        self.info = EngineInfo(vocab_size=100, max_model_len=4096, num_kv_tokens=4096,
                               max_num_seqs=config.max_num_seqs, kind="fake",
                               sleep_levels=list(config.sleep_levels))  # fmt: skip
        self.sleep_level = 0
        #: Every sleep and wake, in order: ("sleep", 1), ("wake", 2)...
        self.calls: list[tuple[str, int]] = []
        self.fail_wake = False
        self._pid = next(self._pids)
        self._crash: LlmportError | None = None
        self.num_requests = 0
        self.is_closed = False
        self.tick = asyncio.Event()
        self.exit_seconds = 0.0
        self.events: list[str] = []

    @property
    def is_alive(self) -> bool:
        return self._crash is None and not self.is_closed

    @property
    def pid(self) -> int | None:
        return self._pid

    def crash(self) -> None:
        self._crash = WorkerCrashed("the fake worker was killed by SIGKILL")
        self.tick.set()

    async def sleep(self, level: int) -> None:
        assert level in self.info.sleep_levels and level > self.sleep_level
        assert self.num_requests == 0, "slept with requests in flight"
        await asyncio.sleep(0.001)
        self.sleep_level = level
        self.calls.append(("sleep", level))

    async def wake_up(self) -> None:
        await asyncio.sleep(0.001)
        self.calls.append(("wake", self.sleep_level))
        if self.fail_wake:
            raise ModelLoadFailed("the fake engine could not reload its weights")
        self.sleep_level = 0

    async def generate(self, request: Request) -> AsyncIterator[Output]:
        if self.sleep_level:
            raise AssertionError("asked to generate while asleep")
        self.num_requests += 1
        try:
            for i in range(request.params.max_tokens or 1):
                await asyncio.sleep(0.001)
                if self._crash is not None:
                    raise self._crash
                if self.is_closed:
                    raise EngineDead("the engine was closed")
                last = i + 1 == (request.params.max_tokens or 1)
                yield Output(
                    request_id=request.request_id, text="x", token_ids=[1],
                    finish_reason=FinishReason.LENGTH if last else None,
                    usage=Usage(prompt_tokens=1, completion_tokens=i + 1) if last else None,
                )  # fmt: skip
        finally:
            self.num_requests -= 1

    async def abort(self, request_id: str) -> None:
        return None

    async def stats(self) -> EngineStats:
        return EngineStats(self.num_requests, self.num_requests, 0, 0, 0, 4096)

    async def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [1] * len(text)

    async def detokenize(self, token_ids: list[int]) -> str:
        return "x" * len(token_ids)

    async def reset_prefix_cache(self) -> None:
        return None

    def fail_requests(self, error: LlmportError) -> None:
        self._crash = error

    async def close(self) -> None:
        self.is_closed = True
        await asyncio.sleep(self.exit_seconds)  # The worker takes a while to exit.
        self.events.append(f"exited {self.target.weight_files[0]}")


class FakeRuntime:
    """Starts FakeEngines in this process and records what it was asked; its nodes are
    ``node_list`` (this machine alone unless a test gives it a cluster)."""

    def __init__(self) -> None:
        self.node_list: list[Node] = [LOCAL_NODE]
        #: (weight file, node name) of every start, in order.
        self.placements: list[tuple[str, str]] = []
        self.engines: list[FakeEngine] = []
        self.num_prepared = 0
        self.fail_next: LlmportError | None = None
        self.is_closed = False
        #: How long each engine's worker takes to exit, and what happened in order.
        self.exit_seconds = 0.0
        self.events: list[str] = []

    async def nodes(self) -> list[Node]:
        return list(self.node_list)

    def prepare(self) -> None:
        self.num_prepared += 1

    async def start(
        self, kind: str, target: LoadTarget, config: BaseModel, memory: MemoryEstimate, node: Node
    ) -> FakeEngine:
        assert kind == "fake" and isinstance(config, FakeConfig)
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.events.append(f"loading {target.weight_files[0]}")
        self.placements.append((target.weight_files[0], node.name))
        await asyncio.sleep(0.01)  # A load takes a while: concurrent requests overlap it.
        engine = FakeEngine(target, config)
        engine.exit_seconds, engine.events = self.exit_seconds, self.events
        self.engines.append(engine)
        return engine

    async def close(self) -> None:
        self.is_closed = True


def load_failure() -> ModelLoadFailed:
    return ModelLoadFailed("the fake engine could not load the model")


def run_manager(
    body: Callable[[Any, FakeRuntime], Awaitable[Any]],
    budget_bytes: int,
    settings: Any,
    engine_configs: dict[str, BaseModel] | None = None,
) -> FakeRuntime:
    """Run ``body(manager, runtime)`` over a ModelManager on the fake kind and runtime,
    closing the manager at the end; returns the runtime for inspection."""
    from llmport.engine.registry import EngineRegistry
    from llmport.manager.manager import ModelManager

    runtime = FakeRuntime()

    async def main() -> None:
        manager = ModelManager(
            settings, EngineRegistry([FAKE_KIND]), runtime,
            engine_configs=engine_configs, budget_bytes=budget_bytes,
        )  # fmt: skip
        try:
            await body(manager, runtime)
        finally:
            await manager.close()

    asyncio.run(main())
    return runtime
