"""The local runtime: each engine in a worker process of this machine, over a pipe.

Spawning costs an interpreter start and the imports (about a second), so it keeps
one spare worker started: a model swap pays only the load. A load takes the spare; the
next one starts when the manager says the machine is quiet (``prepare``), or beside a
load that found no spare (no quiet moment came since the last one).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from llmport.engine.registry import LoadTarget, MemoryEstimate
from llmport.engines.kinds import default_registry
from llmport.runtime.base import LOCAL_NODE, Node
from llmport.runtime.client import PipeEngineClient, WorkerProcess


class LocalRuntime:
    def __init__(self, warm_spare: bool = True) -> None:
        self.warm_spare = warm_spare
        self._spare: WorkerProcess | None = None
        self._is_closed = False

    async def nodes(self) -> list[Node]:
        return [LOCAL_NODE]

    def prepare(self) -> None:
        if self.warm_spare and self._spare is None and not self._is_closed:
            self._spare = self._spawn()

    async def start(
        self, kind: str, target: LoadTarget, config: BaseModel, memory: MemoryEstimate, node: Node
    ) -> PipeEngineClient:
        if not default_registry().get(kind).uses_spare:  # A clean process of its own.
            return await WorkerProcess(warm_up=False).load(kind, target, config)
        worker, self._spare = self._spare, None
        if worker is None or not worker.is_alive:
            worker = self._spawn()
            self.prepare()  # A cold start is slow anyway; the next load is not.
        return await worker.load(kind, target, config)

    def _spawn(self) -> WorkerProcess:
        return WorkerProcess()

    async def close(self) -> None:
        self._is_closed = True
        spare, self._spare = self._spare, None
        if spare is not None:
            await asyncio.to_thread(spare.close)
