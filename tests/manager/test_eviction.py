"""Choosing which idle model leaves (plain objects, no engine)."""

from __future__ import annotations

from typing import Any

from fakes import fake_spec

from llmport.engine.registry import MemoryEstimate
from llmport.manager.eviction import needs_room, pick_victim
from llmport.manager.loaded import LoadedModel


def model(name: str, last_used: float, num_active: int = 0, size: int = 100) -> LoadedModel:
    engine: Any = None  # Eviction never touches the engine.
    return LoadedModel(
        spec=fake_spec(name),
        engine=engine,
        memory=MemoryEstimate(size, 0, 0, 0, overhead_bytes=0),
        load_seconds=0.0,
        keep_alive=300.0,
        last_used=last_used,
        num_active=num_active,
    )


def test_least_recently_used_idle_model_goes_first() -> None:
    models = [model("a", 5.0), model("b", 1.0, num_active=2), model("c", 3.0)]
    victim = pick_victim(models)
    assert victim is not None and victim.name == "c"


def test_busy_models_are_never_victims() -> None:
    assert pick_victim([model("a", 1.0, num_active=1)]) is None


def test_needs_room_by_bytes_and_by_count() -> None:
    models = [model("a", 1.0, size=100), model("b", 2.0, size=100)]
    assert not needs_room(models, 50, budget_bytes=250, max_loaded=0)
    assert needs_room(models, 51, budget_bytes=250, max_loaded=0)
    assert needs_room(models, 1, budget_bytes=10_000, max_loaded=2)
    assert not needs_room(models, 1, budget_bytes=10_000, max_loaded=3)
