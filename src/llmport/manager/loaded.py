"""One loaded model: its engine worker, who is using it, and when it may leave."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from llmport.engine.protocol import EngineClient
from llmport.engine.registry import MemoryEstimate
from llmport.models.spec import ModelSpec


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
