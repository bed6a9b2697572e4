"""ModelManager: which models are loaded, who holds them, and when they leave.

Follows Ollama's scheduler: a request takes a *lease* on a model, loading it on
first use (concurrent first requests share one load); loads run one at a time so
the memory arithmetic is never raced; to fit a new model, idle models leave least
recently used first; when the last lease ends the keep-alive timer starts.
Workers are separate processes: a crash fails that model's requests only, and
the next request loads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from llmport.engine.registry import EngineKind, EngineRegistry, MemoryEstimate, load_target
from llmport.errors import (
    InsufficientMemory,
    LlmportError,
    NodeUnavailable,
    QueueFull,
    ServerShuttingDown,
)
from llmport.manager.budget import default_budget_bytes
from llmport.manager.eviction import Eviction, needs_room, next_eviction
from llmport.manager.keep_alive import parse_keep_alive
from llmport.manager.loaded import LoadedModel
from llmport.manager.placement import NodeRoom, choose_node
from llmport.manager.settings import ManagerSettings
from llmport.models.spec import ModelSpec
from llmport.runtime.base import Node, Runtime
from llmport.sizes import format_size, parse_size

logger = logging.getLogger(__name__)


class ModelManager:
    """Owns every loaded model. Use from one asyncio event loop; not thread-safe.

    It knows engines only through the registry (which kind serves a spec, what it will
    cost, how its config is sized) and the runtime (which starts it somewhere and hands
    back an EngineClient).
    """

    def __init__(
        self,
        settings: ManagerSettings,
        registry: EngineRegistry,
        runtime: Runtime,
        *,
        engine_configs: dict[str, BaseModel] | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.runtime = runtime
        self.engine_configs = dict(engine_configs or {})
        self.budget_bytes = budget_bytes or _budget(settings)
        self.default_keep_alive = parse_keep_alive(settings.keep_alive) or 0.0
        self._clock = clock
        self._loaded: dict[str, LoadedModel] = {}
        self._loads: dict[str, asyncio.Task[LoadedModel]] = {}
        self._loading: dict[str, ModelSpec] = {}  # What each task of _loads brings.
        # Models whose workers are exiting: the node and the memory each holds there until
        # it is gone.
        self._leaving: dict[asyncio.Task[None], tuple[str, int]] = {}
        self._load_lock = asyncio.Lock()
        self._changed = asyncio.Event()  # A model went idle or left.
        self._num_in_flight: Counter[str] = Counter()
        self._closed = False
        self._is_draining = False

    # -- leases --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(
        self, spec: ModelSpec, keep_alive: float | None = None
    ) -> AsyncIterator[LoadedModel]:
        """Hold ``spec``'s model loaded for the block; raises QueueFull, load errors.

        ``keep_alive`` (seconds, inf = forever, 0 = unload when idle) overrides the default
        for how long the model stays once this request ends.
        """
        if self._is_draining:
            raise ServerShuttingDown("the server is shutting down; retry on another")
        key = spec.key
        kind = self.registry.kind_for(spec)
        self._admit(spec.name, key, self.config_for(kind))
        self._num_in_flight[key] += 1
        try:
            model = await self._get(spec, kind)
            model.num_active += 1
            model.cancel_expiry()
            try:
                yield model
            finally:
                model.num_active -= 1
                model.last_used = self._clock()
                if keep_alive is not None:
                    model.keep_alive = keep_alive
                if model.is_idle:
                    self._on_idle(model)
        finally:
            self._num_in_flight[key] -= 1
            if not self._num_in_flight[key]:
                del self._num_in_flight[key]

    def config_for(self, kind: EngineKind) -> Any:
        """The server's settings for engines of ``kind`` (the kind's defaults if none)."""
        config = self.engine_configs.get(kind.name)
        if config is None:
            config = self.engine_configs[kind.name] = kind.config_class()
        return config

    def _admit(self, name: str, key: str, config: Any) -> None:
        max_num_seqs = int(getattr(config, "max_num_seqs", 1))
        limit = max_num_seqs + self.settings.max_queue
        if self._num_in_flight[key] >= limit:
            raise QueueFull(
                f"model {name!r} has {self._num_in_flight[key]} requests in flight, its limit "
                f"(max_num_seqs {max_num_seqs} + max_queue {self.settings.max_queue}); retry "
                "shortly",
                retry_after=1,
            )

    async def _get(self, spec: ModelSpec, kind: EngineKind) -> LoadedModel:
        key = spec.key
        model = self._loaded.get(key)
        if model is not None and model.engine.is_alive and not model.sleep_level:
            return model
        if model is not None and not model.engine.is_alive:
            # Its worker's end may take a while (a lost node): load again at once, with
            # what it held counted on its node until it is gone.
            logger.warning("model %s: its worker died; loading it again", model.name)
            self._unload_in_background(model)
            model = None
        task = self._loads.get(key)
        if task is None:  # A sleeping model wakes; a missing one loads.
            job = self._load(spec, kind) if model is None else self._wake(model)
            task = self._loads[key] = asyncio.create_task(job)
            self._loading[key] = spec
            task.add_done_callback(lambda _: (self._loads.pop(key, None),
                                              self._loading.pop(key, None)))  # fmt: skip
        # A waiter that gives up (client gone) must not cancel the load others share.
        return await asyncio.shield(task)

    # -- loading and unloading -------------------------------------------------------

    async def _load(self, spec: ModelSpec, kind: EngineKind) -> LoadedModel:
        async with self._load_lock:
            nodes = await self.runtime.nodes()
            if not nodes:
                raise NodeUnavailable(f"no node can take model {spec.name!r}: none is alive")
            # The context is sized for the largest node; placement then picks one.
            largest = max(self.budget_of(node) for node in nodes)
            config, memory = kind.plan(spec, self.config_for(kind), largest)
            node = self._place(spec.name, memory, nodes)
            await self._make_room(spec.name, memory, node)
            started = self._clock()
            engine = await self.runtime.start(kind.name, load_target(spec), config, memory, node)
            model = LoadedModel(
                spec=spec,
                engine=engine,
                memory=memory,
                load_seconds=self._clock() - started,
                keep_alive=self.default_keep_alive,
                last_used=self._clock(),
                loaded_at=self._clock(),
                sleep_levels=tuple(engine.info.sleep_levels),
                node=node,
            )
            self._loaded[model.key] = model
            logger.info(
                "loaded %s (%s%s) in %.2fs: context %d tokens, ~%s",
                spec.name,
                kind.name,
                "" if node.name == "local" else f" on node {node.name}",
                model.load_seconds,
                engine.info.max_model_len,
                format_size(memory.total_bytes),
            )
            return model

    async def _wake(self, model: LoadedModel) -> LoadedModel:
        """Wake a sleeping model (the ladder put it there), making room for what it takes
        back; a failed wake unloads it and raises."""
        async with self._load_lock:
            model.num_active += 1  # Not a victim of its own wake.
            try:
                needed = model.memory.total_bytes - model.resident_bytes
                await self._make_room(model.name, model.memory, model.node, needed,
                                      adds_model=False)  # fmt: skip
                started = self._clock()
                await model.engine.wake_up()
            except BaseException:
                model.num_active -= 1
                await self._unload(model)
                raise
            model.num_active -= 1
            model.sleep_level = 0
            logger.info("woke %s in %.2fs", model.name, self._clock() - started)
            return model

    async def _evict(self, step: Eviction, name: str) -> None:
        """One rung down the ladder for ``step.model``: deeper sleep, or unload."""
        model, level = step
        if level is None:
            logger.info("unloading %s to make room for %s", model.name, name)
            self._unload_in_background(model)
            return
        logger.info("%s sleeps (level %d) to make room for %s", model.name, level, name)
        try:
            await model.engine.sleep(level)
        except LlmportError as error:
            logger.warning("%s could not sleep (%s); unloading it", model.name, error.message)
            await self._unload(model)
            return
        model.sleep_level = level
        self._changed.set()

    def budget_of(self, node: Node) -> int:
        """The memory models may use on ``node``: its own budget, else the server's."""
        return node.budget_bytes if node.budget_bytes is not None else self.budget_bytes

    def _room(self, node: Node) -> NodeRoom:
        models = [m for m in self._loaded.values() if m.node.id == node.id]
        leaving = sum(size for where, size in self._leaving.values() if where == node.id)
        return NodeRoom(node, self.budget_of(node), models, leaving)

    def _place(self, name: str, memory: MemoryEstimate, nodes: list[Node]) -> Node:
        """The node ``name`` loads on; InsufficientMemory when no node can ever hold it."""
        rooms = [self._room(node) for node in nodes]
        chosen = choose_node(rooms, memory.total_bytes, self.settings.max_loaded_models)
        if chosen is None:
            largest = max(room.budget_bytes for room in rooms)
            one = len(rooms) == 1
            where = "the memory budget" if one else "the largest node's budget"
            fix = "raise --memory-budget" if one else "give a node a larger budget"
            raise InsufficientMemory(
                f"model {name!r} needs about {format_size(memory.total_bytes)} (weights "
                f"{format_size(memory.weights_bytes)}, KV cache {format_size(memory.kv_bytes)} "
                f"for {memory.num_kv_tokens} tokens) but {where} is {format_size(largest)}; "
                f"lower --max-model-len or {fix}"
            )
        return chosen.node

    async def _make_room(
        self,
        name: str,
        memory: MemoryEstimate,
        node: Node,
        needed_bytes: int | None = None,
        adds_model: bool = True,
    ) -> None:
        """Walk idle models on ``node`` down the eviction ladder until ``needed_bytes``
        (default: the whole estimate) fit beside the others there, and one more model if
        ``adds_model``."""
        needed = memory.total_bytes if needed_bytes is None else needed_bytes
        budget = self.budget_of(node)
        assert needed <= budget, "placement chose a node whose budget holds it"
        max_loaded = self.settings.max_loaded_models
        while True:
            room = self._room(node)
            models = room.models
            if not needs_room(models, needed + room.leaving_bytes, budget, max_loaded,
                              adds_model):  # fmt: skip
                return
            if room.leaving_bytes and not needs_room(
                models, needed, budget, max_loaded, adds_model
            ):
                # Only workers still exiting are in the way: wait for them, evict no more.
                await asyncio.wait(list(self._leaving), return_when=asyncio.FIRST_COMPLETED)
                continue
            step = next_eviction(models, max_loaded, adds_model)
            if step is not None:
                await self._evict(step, name)
                continue
            self._changed.clear()
            await self._changed.wait()  # Every model is busy: wait until one is idle.

    def _on_idle(self, model: LoadedModel) -> None:
        self._changed.set()
        self._prepare_when_quiet()
        if not model.engine.is_alive or model.keep_alive <= 0:
            asyncio.get_running_loop().create_task(self._expire(model))
        elif not model.is_forever:
            model.expires_at = time.time() + model.keep_alive
            model.expiry = asyncio.get_running_loop().call_later(
                model.keep_alive, lambda: asyncio.ensure_future(self._expire(model))
            )

    async def _expire(self, model: LoadedModel) -> None:
        if model.is_idle and self._loaded.get(model.key) is model:
            logger.info("unloading %s (keep_alive %.0fs ran out)", model.name, model.keep_alive)
            await self._unload(model)

    async def _unload(self, model: LoadedModel) -> None:
        model.cancel_expiry()
        if self._loaded.get(model.key) is model:
            del self._loaded[model.key]
        await model.engine.close()
        self._changed.set()

    def _unload_in_background(self, model: LoadedModel) -> None:
        """Unload without waiting for the worker's exit: the next load starts at once (a
        swap overlaps the two) while the exiting worker's memory still counts against the
        budget until it is gone. Only the count of loaded models frees up at once."""
        model.cancel_expiry()
        if self._loaded.get(model.key) is model:
            del self._loaded[model.key]
        task = asyncio.get_running_loop().create_task(model.engine.close())
        self._leaving[task] = (model.node.id, model.resident_bytes)
        task.add_done_callback(self._left)

    def _left(self, task: asyncio.Task[None]) -> None:
        self._leaving.pop(task, None)
        self._changed.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("unloading a model failed: %s", task.exception())

    # -- queries and control -----------------------------------------------------------

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def loading(self) -> list[ModelSpec]:
        """Models whose first load is under way (not yet in ``loaded``)."""
        return [spec for key, spec in self._loading.items() if key not in self._loaded]

    async def unload(self, spec: ModelSpec) -> bool:
        """Unload ``spec``'s model now if it is loaded and idle (Ollama's ``keep_alive: 0``)."""
        model = self._loaded.get(spec.key)
        if model is None:
            return False
        model.keep_alive = 0
        if model.is_idle:
            await self._unload(model)
        return True

    async def preload(self, spec: ModelSpec, keep_alive: float | None = None) -> LoadedModel:
        async with self.acquire(spec, keep_alive) as model:
            return model

    def drain(self) -> None:
        """A shutdown began: refuse new leases; those held go on until ``end_requests``."""
        self._is_draining = True

    def end_requests(self) -> None:
        """End every request in every engine with ServerShuttingDown (the grace is over)."""
        for model in self._loaded.values():
            model.engine.fail_requests(ServerShuttingDown("the server shut down mid-answer"))

    def start_spare(self) -> None:
        """Let the runtime warm up for the first load."""
        self.runtime.prepare()

    def _prepare_when_quiet(self) -> None:
        """Let the runtime warm up for the next load once nothing loads or generates: a
        spare's start (an interpreter and its imports, about a second of CPU) beside a
        llama.cpp worker's threads slows their every step, most on a small machine (8
        tokens after a swap took 0.9 s instead of 0.19 s on 2 cores)."""
        busy = self._loads or not all(model.is_idle for model in self._loaded.values())
        if not self._closed and not busy:
            self.runtime.prepare()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._loads.values()):
            task.cancel()
        for model in list(self._loaded.values()):
            await self._unload(model)
        if self._leaving:
            await asyncio.wait(list(self._leaving))
        await self.runtime.close()


def _budget(settings: ManagerSettings) -> int:
    if settings.memory_budget is not None:
        return parse_size(settings.memory_budget)
    return default_budget_bytes()
