"""Which idle model makes room, and how: the eviction ladder.

Ollama's rule picks the victim (idle models only, least recently used first); the ladder
says how far it goes. An engine that can sleep (vLLM on a GPU) first sleeps at level 1
(weights to host memory, KV cache dropped: it wakes in well under a second), then at
level 2 (weights dropped too), then exits; an engine that cannot sleep (llama.cpp, vLLM
on a CPU) exits. Every idle model takes the first rung before any takes the second, so
as many models as possible stay quick to wake. Only an exit lowers the model count.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from llmport.manager.loaded import LoadedModel


class Eviction(NamedTuple):
    """Put ``model`` to sleep at ``level``, or unload it when ``level`` is None."""

    model: LoadedModel
    level: int | None


def pick_victim(models: Iterable[LoadedModel]) -> LoadedModel | None:
    """The idle model to unload first: least recently used; None when every model is busy."""
    idle = [m for m in models if m.is_idle]
    return min(idle, key=lambda m: m.last_used, default=None)


def is_full(models: Iterable[LoadedModel], max_loaded: int) -> bool:
    """Whether ``max_loaded`` (0 = no limit) leaves no room for one more model."""
    return max_loaded > 0 and len(list(models)) >= max_loaded


def needs_room(
    models: Iterable[LoadedModel],
    needed_bytes: int,
    budget_bytes: int,
    max_loaded: int,
    adds_model: bool = True,
) -> bool:
    """Whether ``needed_bytes`` more break the budget (what each model holds at its rung)
    or, when a model is added, the count."""
    models = list(models)
    used = sum(m.resident_bytes for m in models)
    return (adds_model and is_full(models, max_loaded)) or used + needed_bytes > budget_bytes


def next_eviction(
    models: Iterable[LoadedModel], max_loaded: int, adds_model: bool = True
) -> Eviction | None:
    """The next rung down for one idle model; None when every model is busy.

    Over the count only an exit helps (least recently used first); over the budget the
    shallowest sleeper goes one rung deeper (least recently used first among equals).
    """
    models = list(models)
    idle = [m for m in models if m.is_idle]
    if not idle:
        return None
    if adds_model and is_full(models, max_loaded):
        return Eviction(min(idle, key=lambda m: m.last_used), None)
    victim = min(idle, key=lambda m: (m.sleep_level, m.last_used))
    return Eviction(victim, victim.deeper_level)
