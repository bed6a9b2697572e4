"""Which node a model loads on: one whose budget it fits, evicting as little as it can.

Every node has its own budget and its own loaded models; the eviction rules (idle only,
least recently used first, ``--max-loaded-models`` per node) apply within a node. A
model goes where it fits now, else where evicting idle models makes room (the node that
must give up least), else where it could fit once busy models go idle. Only a model
larger than every node's budget is refused outright.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmport.manager.eviction import is_full, needs_room
from llmport.manager.loaded import LoadedModel
from llmport.runtime.base import Node


@dataclass
class NodeRoom:
    """One node as placement sees it."""

    node: Node
    budget_bytes: int
    models: list[LoadedModel]
    #: Memory still held by workers that are exiting there.
    leaving_bytes: int = 0

    @property
    def used_bytes(self) -> int:
        return sum(m.resident_bytes for m in self.models) + self.leaving_bytes

    @property
    def free_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes

    def fits_now(self, needed: int, max_loaded: int) -> bool:
        return not needs_room(self.models, needed + self.leaving_bytes, self.budget_bytes,
                              max_loaded)  # fmt: skip

    def eviction_needed(self, needed: int, max_loaded: int) -> int | None:
        """Bytes of idle models that must leave for ``needed`` to fit (0 when only the
        count is over); None when evicting every idle model would not be enough."""
        idle = [m for m in self.models if m.is_idle]
        reclaimable = sum(m.resident_bytes for m in idle)
        short = max(0, needed - self.free_bytes)
        if short > reclaimable:
            return None
        if is_full(self.models, max_loaded) and not idle:
            return None
        return short


def choose_node(rooms: Sequence[NodeRoom], needed: int, max_loaded: int) -> NodeRoom | None:
    """The node ``needed`` bytes go to; None when no node's budget can ever hold them."""
    able = [room for room in rooms if needed <= room.budget_bytes]
    if not able:
        return None
    ready = [room for room in able if room.fits_now(needed, max_loaded)]
    if ready:
        return max(ready, key=lambda room: room.free_bytes)
    costs = [(cost, room) for room in able
             if (cost := room.eviction_needed(needed, max_loaded)) is not None]  # fmt: skip
    if costs:
        return min(costs, key=lambda pair: (pair[0], -pair[1].free_bytes))[1]
    return max(able, key=lambda room: room.free_bytes)  # Wait there for a model to go idle.
