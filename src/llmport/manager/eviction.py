"""Which idle models to unload so a new one fits (Ollama's rule: idle ones, LRU first)."""

from __future__ import annotations

from collections.abc import Iterable

from llmport.manager.loaded import LoadedModel


def pick_victim(models: Iterable[LoadedModel]) -> LoadedModel | None:
    """The idle model to unload first: least recently used; None when every model is busy."""
    idle = [m for m in models if m.is_idle]
    return min(idle, key=lambda m: m.last_used, default=None)


def needs_room(
    models: Iterable[LoadedModel], needed_bytes: int, budget_bytes: int, max_loaded: int
) -> bool:
    """Whether loading one more model of ``needed_bytes`` breaks the budget or the count."""
    models = list(models)
    used = sum(m.memory.total_bytes for m in models)
    too_many = max_loaded > 0 and len(models) >= max_loaded
    return too_many or used + needed_bytes > budget_bytes
