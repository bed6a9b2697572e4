"""The engine registry: which engine kind serves a model, and what each kind offers.

A kind is added at one place: its config class, its memory planner (run in the
server, before loading: one formula that both plans the budget and sizes the
engine) and its factory (run in the worker process). The manager and the runtimes
see kinds only through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from pydantic import BaseModel

from llmport.engine.protocol import WorkerEngine
from llmport.errors import UnsupportedOption
from llmport.models.spec import ModelSpec

MiB = 1 << 20
#: An engine worker's own cost: the interpreter, numpy, the engine's library and buffers.
WORKER_OVERHEAD_BYTES = 160 * MiB


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """What a loaded model will cost, by part (an upper bound)."""

    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    num_kv_tokens: int
    overhead_bytes: int = WORKER_OVERHEAD_BYTES

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes


class Plan(NamedTuple):
    """A kind's answer for one model under a budget: the sized config and its cost."""

    config: BaseModel
    memory: MemoryEstimate


class LoadTarget(msgspec.Struct, kw_only=True):
    """The files a worker loads (a ModelSpec's, without what only the server needs)."""

    weight_files: list[str]
    projector_files: list[str] = msgspec.field(default_factory=list)
    #: What a worker on a machine without these files fetches them by (``ModelSpec.
    #: fetch_ref``); "" when only the server's machine has them.
    fetch_ref: str = ""


#: (spec, the server's config for this kind, memory budget in bytes) -> Plan.
Planner = Callable[[ModelSpec, Any, int], Plan]
#: (files, the planned config) -> the engine; runs in the worker process.
Factory = Callable[[LoadTarget, Any], WorkerEngine]


@dataclass(frozen=True)
class EngineKind:
    name: str
    #: ModelSpec formats it serves (``gguf``, ``hf``).
    formats: frozenset[str]
    config_class: type[BaseModel]
    plan: Planner
    create: Factory
    #: Imports a worker does while it waits as a spare, so a load pays only the load.
    warm_up: Callable[[], None] = lambda: None
    #: False: load in a fresh worker that imported no other kind's libraries (vLLM's torch
    #: runs 13x slower beside llama.cpp's OpenMP runtime in one process).
    uses_spare: bool = True


class EngineRegistry:
    """Kinds by name; ``kind_for`` picks the one that serves a spec's format."""

    def __init__(self, kinds: Iterable[EngineKind] = ()) -> None:
        self._kinds: dict[str, EngineKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: EngineKind) -> None:
        self._kinds[kind.name] = kind

    def kinds(self) -> list[EngineKind]:
        return list(self._kinds.values())

    def get(self, name: str) -> EngineKind:
        try:
            return self._kinds[name]
        except KeyError:
            offered = ", ".join(self._kinds) or "none"
            raise UnsupportedOption(f"engine {name!r} is not available (offered: {offered})",
                                    param="engine") from None  # fmt: skip

    def kind_for(self, spec: ModelSpec) -> EngineKind:
        for kind in self._kinds.values():
            if spec.format in kind.formats:
                return kind
        raise UnsupportedOption(
            f"model {spec.name!r} is in {spec.format} format, which no installed engine serves",
            param="model",
        )


def load_target(spec: ModelSpec) -> LoadTarget:
    return LoadTarget(
        weight_files=[str(p) for p in spec.weight_files],
        projector_files=[str(p) for p in spec.projector_files],
        fetch_ref=spec.fetch_ref,
    )
