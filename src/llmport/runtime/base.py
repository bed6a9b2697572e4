"""The runtime seam: start an engine somewhere, get an EngineClient back.

The manager says what to run (an engine kind, its files, its planned config and
what it will cost); the runtime decides where (a local process, a node of a
cluster) and owns whatever it keeps warm for the next start.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from llmport.engine.protocol import EngineClient
from llmport.engine.registry import LoadTarget, MemoryEstimate


class Runtime(Protocol):
    def prepare(self) -> None:
        """Warm up for the next ``start`` (a spare worker); a no-op where nothing helps."""
        ...

    async def start(
        self, kind: str, target: LoadTarget, config: BaseModel, memory: MemoryEstimate
    ) -> EngineClient:
        """Load ``target`` with engine ``kind`` somewhere it fits; raise why it failed
        (ModelLoadFailed, InvalidModelFile...)."""
        ...

    async def close(self) -> None:
        """Release what the runtime keeps (spares); started engines are closed by their
        owners."""
        ...
