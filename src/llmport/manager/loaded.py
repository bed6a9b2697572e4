"""One loaded model: its engine worker, who is using it, when it may leave, and how deep
it sleeps (the eviction ladder's rung: awake, vLLM's sleep level 1 or 2)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from llmport.engine.protocol import EngineClient
from llmport.engine.registry import MemoryEstimate
from llmport.models.spec import ModelSpec
from llmport.runtime.base import LOCAL_NODE, Node


@dataclass(eq=False)
class LoadedModel:
    """Mutated only by the ModelManager, on its event loop.

    ``num_active`` counts leases; while it is above 0 the model is never evicted.
    When it drops to 0 the keep-alive timer (``expiry``) starts.
    """

    #: The spec of the request that loaded it (its name is what ps shows).
    spec: ModelSpec
    engine: EngineClient
    memory: MemoryEstimate
    load_seconds: float
    #: Seconds it stays loaded once idle; math.inf = forever, 0 = unload when idle.
    keep_alive: float
    last_used: float
    #: The manager's clock when loading finished (tells a request whether it waited for it).
    loaded_at: float = 0.0
    num_active: int = 0
    #: The engine's sleep levels, shallowest first (``EngineInfo.sleep_levels``); empty
    #: when it can only exit.
    sleep_levels: tuple[int, ...] = ()
    #: 0 awake, else the sleep level it is at (woken before its next request).
    sleep_level: int = 0
    #: Where its worker runs (the local runtime's only node, or a cluster node).
    node: Node = LOCAL_NODE
    #: Wall-clock time it unloads if still idle (None while busy or kept forever).
    expires_at: float | None = None
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_model_len(self) -> int:
        return self.engine.info.max_model_len

    @property
    def state(self) -> str:
        """``awake`` or ``sleeping`` (what ps shows)."""
        return "sleeping" if self.sleep_level else "awake"

    @property
    def resident_bytes(self) -> int:
        """What it holds of the budget now: everything awake; asleep at level 1 the
        weights (moved to host memory) and the worker; at level 2 the worker alone."""
        memory = self.memory
        if self.sleep_level == 0:
            return memory.total_bytes
        if self.sleep_level == 1:
            return memory.weights_bytes + memory.overhead_bytes
        return memory.overhead_bytes

    @property
    def deeper_level(self) -> int | None:
        """The next rung down the ladder: the next sleep level, None when only exit is left."""
        return next((level for level in self.sleep_levels if level > self.sleep_level), None)

    @property
    def is_idle(self) -> bool:
        return self.num_active == 0

    @property
    def is_forever(self) -> bool:
        return math.isinf(self.keep_alive)

    def cancel_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.expires_at = None
