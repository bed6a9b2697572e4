"""The runtime seam: start an engine somewhere, get an EngineClient back.

The manager says what to run (an engine kind, its files, its planned config and
what it will cost) and on which of the runtime's nodes (where it fits the node's
budget); the runtime starts it there (a local process, a Ray actor on a cluster
node) and owns whatever it keeps warm for the next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from llmport.engine.protocol import EngineClient
from llmport.engine.registry import LoadTarget, MemoryEstimate


@dataclass(frozen=True)
class Node:
    """A place workers run, with the memory models may use there."""

    #: Stable for the node's life (a node that restarts comes back with a new id).
    id: str
    #: What ps and error messages show.
    name: str
    #: The node's own memory budget; None: the server's (``--memory-budget``).
    budget_bytes: int | None = None
    num_gpus: int = 0


#: This machine, the only node of the local runtime.
LOCAL_NODE = Node(id="local", name="local")


class Runtime(Protocol):
    async def nodes(self) -> list[Node]:
        """The nodes a model may be placed on now (alive, and not suspected of hanging)."""
        ...

    def prepare(self) -> None:
        """Warm up for the next ``start`` (a spare worker); a no-op where nothing helps."""
        ...

    async def start(
        self, kind: str, target: LoadTarget, config: BaseModel, memory: MemoryEstimate, node: Node
    ) -> EngineClient:
        """Load ``target`` with engine ``kind`` on ``node`` (one of ``nodes()``, chosen by the
        manager); raise why it failed (ModelLoadFailed, InvalidModelFile, NodeLost...)."""
        ...

    async def close(self) -> None:
        """Release what the runtime keeps (spares); started engines are closed by their
        owners."""
        ...
