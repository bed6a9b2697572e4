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
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from llmport.config import EngineConfig
from llmport.engine.client import WorkerProcess
from llmport.errors import InsufficientMemory, QueueFull, ServerShuttingDown
from llmport.manager.catalog import Catalog
from llmport.manager.eviction import needs_room, pick_victim
from llmport.manager.keep_alive import parse_keep_alive
from llmport.manager.loaded import LoadedModel
from llmport.manager.memory import (
    MemoryEstimate,
    default_budget_bytes,
    estimate_memory,
    format_size,
    parse_size,
)
from llmport.manager.settings import ManagerSettings
from llmport.store.gguf_info import GGUFInfo, read_gguf_info

logger = logging.getLogger(__name__)

#: The smallest context the manager shrinks a model to before calling it too large.
MIN_CONTEXT_TOKENS = 2048
#: Output rows llama.cpp keeps per sequence slot (running + cached prefixes).
SLOTS_PER_SEQ = 1.5


class ModelManager:
    """Owns every loaded model. Use from one asyncio event loop; not thread-safe."""

    def __init__(
        self,
        settings: ManagerSettings,
        engine_config: EngineConfig,
        catalog: Catalog,
        *,
        spawn_worker: Callable[[], WorkerProcess] = WorkerProcess,
        clock: Callable[[], float] = time.monotonic,
        budget_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.engine_config = engine_config
        self.catalog = catalog
        self.budget_bytes = budget_bytes or _budget(settings)
        self.default_keep_alive = parse_keep_alive(settings.keep_alive) or 0.0
        self._spawn_worker = spawn_worker
        self._clock = clock
        self._loaded: dict[str, LoadedModel] = {}
        self._loads: dict[str, asyncio.Task[LoadedModel]] = {}
        self._load_lock = asyncio.Lock()
        self._changed = asyncio.Event()  # A model went idle or left.
        self._num_in_flight: Counter[str] = Counter()
        self._spare: WorkerProcess | None = None
        self._closed = False
        self._is_draining = False

    # -- leases --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(
        self, name: str, keep_alive: float | None = None
    ) -> AsyncIterator[LoadedModel]:
        """Hold ``name`` loaded for the block; raises ModelNotFound, QueueFull, load errors.

        ``keep_alive`` (seconds, inf = forever, 0 = unload when idle) overrides the default
        for how long the model stays once this request ends.
        """
        if self._is_draining:
            raise ServerShuttingDown("the server is shutting down; retry on another")
        path = await asyncio.to_thread(self.catalog.resolve, name)
        key = str(path)
        self._admit(name, key)
        self._num_in_flight[key] += 1
        try:
            model = await self._get(name, path)
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

    def _admit(self, name: str, key: str) -> None:
        limit = self.engine_config.max_num_seqs + self.settings.max_queue
        if self._num_in_flight[key] >= limit:
            raise QueueFull(
                f"model {name!r} has {self._num_in_flight[key]} requests in flight, its limit "
                f"(max_num_seqs {self.engine_config.max_num_seqs} + max_queue "
                f"{self.settings.max_queue}); retry shortly",
                retry_after=1,
            )

    async def _get(self, name: str, path: Path) -> LoadedModel:
        key = str(path)
        model = self._loaded.get(key)
        if model is not None and model.engine.is_alive:
            return model
        if model is not None:
            logger.warning("model %s: its worker died; loading it again", model.name)
            await self._unload(model)
        task = self._loads.get(key)
        if task is None:
            task = self._loads[key] = asyncio.create_task(self._load(name, path))
            task.add_done_callback(lambda _: self._loads.pop(key, None))
        # A waiter that gives up (client gone) must not cancel the load others share.
        return await asyncio.shield(task)

    # -- loading and unloading -------------------------------------------------------

    async def _load(self, name: str, path: Path) -> LoadedModel:
        async with self._load_lock:
            info = await asyncio.to_thread(read_gguf_info, path)
            config, memory = self.plan(info)
            await self._make_room(name, memory)
            started = self._clock()
            engine = await self._take_worker().load(path, config)
            model = LoadedModel(
                path=path,
                engine=engine,
                info=info,
                memory=memory,
                load_seconds=self._clock() - started,
                name=name,
                keep_alive=self.default_keep_alive,
                last_used=self._clock(),
                loaded_at=self._clock(),
            )
            self._loaded[model.key] = model
            logger.info(
                "loaded %s in %.2fs: context %d tokens, ~%s",
                name,
                model.load_seconds,
                engine.info.max_model_len,
                format_size(memory.total_bytes),
            )
            return model

    def plan(self, info: GGUFInfo) -> tuple[EngineConfig, MemoryEstimate]:
        """The engine config for this model and what it costs: the trained context unless
        max_model_len is set, shrunk only as far as the memory budget demands."""
        config = self.engine_config
        kv_type = config.kv_ggml_type_name
        wanted = config.max_num_kv_tokens or config.max_model_len or info.context_length

        def estimate(num_tokens: int) -> MemoryEstimate:
            num_outputs = math.ceil(SLOTS_PER_SEQ * config.max_num_seqs)
            return estimate_memory(
                info, num_tokens, kv_type, num_outputs, config.max_num_batched_tokens
            )

        memory = estimate(wanted)
        if memory.total_bytes > self.budget_bytes and config.max_model_len is None:
            low, high = MIN_CONTEXT_TOKENS, wanted  # The largest context that fits.
            while low < high:
                middle = (low + high + 1) // 2
                if estimate(middle).total_bytes <= self.budget_bytes:
                    low = middle
                else:
                    high = middle - 1
            wanted = low
            memory = estimate(wanted)
            logger.warning(
                "%s: context capped at %d tokens by the memory budget (trained for %d)",
                info.path.name,
                wanted,
                info.context_length,
            )
        max_model_len = min(wanted, config.max_model_len or wanted)
        planned = config.model_copy(
            update={"max_model_len": max_model_len, "max_num_kv_tokens": wanted}
        )
        return planned, memory

    async def _make_room(self, name: str, memory: MemoryEstimate) -> None:
        needed = memory.total_bytes
        if needed > self.budget_bytes:
            raise InsufficientMemory(
                f"model {name!r} needs about {format_size(needed)} (weights "
                f"{format_size(memory.weights_bytes)}, KV cache {format_size(memory.kv_bytes)} "
                f"for {memory.num_kv_tokens} tokens) but the memory budget is "
                f"{format_size(self.budget_bytes)}; lower --max-model-len or raise "
                "--memory-budget"
            )
        max_loaded = self.settings.max_loaded_models
        while needs_room(self._loaded.values(), needed, self.budget_bytes, max_loaded):
            victim = pick_victim(self._loaded.values())
            if victim is not None:
                logger.info("unloading %s to make room for %s", victim.name, name)
                await self._unload(victim)
                continue
            self._changed.clear()
            await self._changed.wait()  # Every model is busy: wait until one is idle.

    def _take_worker(self) -> WorkerProcess:
        spare, self._spare = self._spare, None
        if spare is None or not spare.is_alive:
            spare = self._spawn_worker()
        if self.settings.warm_spare and not self._closed:
            self._spare = self._spawn_worker()
        return spare

    def _on_idle(self, model: LoadedModel) -> None:
        self._changed.set()
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

    # -- queries and control -----------------------------------------------------------

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    async def unload(self, name: str) -> bool:
        """Unload ``name`` now if it is loaded and idle (Ollama's ``keep_alive: 0``)."""
        path = await asyncio.to_thread(self.catalog.resolve, name)
        model = self._loaded.get(str(path))
        if model is None:
            return False
        model.keep_alive = 0
        if model.is_idle:
            await self._unload(model)
        return True

    async def preload(self, name: str, keep_alive: float | None = None) -> LoadedModel:
        async with self.acquire(name, keep_alive) as model:
            return model

    def drain(self) -> None:
        """A shutdown began: refuse new leases; those held go on until ``end_requests``."""
        self._is_draining = True

    def end_requests(self) -> None:
        """End every request in every engine with ServerShuttingDown (the grace is over)."""
        for model in self._loaded.values():
            model.engine.fail_requests(ServerShuttingDown("the server shut down mid-answer"))

    def start_spare(self) -> None:
        if self.settings.warm_spare and self._spare is None:
            self._spare = self._spawn_worker()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._loads.values()):
            task.cancel()
        for model in list(self._loaded.values()):
            await self._unload(model)
        if self._spare is not None:
            spare, self._spare = self._spare, None
            await asyncio.to_thread(spare.close)


def _budget(settings: ManagerSettings) -> int:
    if settings.memory_budget is not None:
        return parse_size(settings.memory_budget)
    return default_budget_bytes()
