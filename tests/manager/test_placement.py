"""Placement over the fake kind on a fake cluster of nodes with their own budgets: a
model goes where it fits, eviction happens on the chosen node only, the count limit is
per node, and only a model larger than every node is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fakes import FakeRuntime, MiB, fake_spec, run_manager

from llmport.errors import InsufficientMemory, NodeUnavailable
from llmport.manager.manager import ModelManager
from llmport.manager.settings import ManagerSettings
from llmport.models.spec import ModelSpec
from llmport.runtime.base import Node
from llmport.types import Request, SamplingParams

#: Each fake model costs its size + 10 MiB of KV: 110 MiB for the default 100 MiB.
BIG = Node(id="big", name="big", budget_bytes=300 * MiB)
SMALL = Node(id="small", name="small", budget_bytes=150 * MiB)


def run(
    body: Callable[[ModelManager, FakeRuntime], Awaitable[Any]],
    nodes: list[Node],
    **settings: Any,
) -> FakeRuntime:
    async def on_cluster(manager: ModelManager, runtime: FakeRuntime) -> None:
        runtime.node_list = nodes
        await body(manager, runtime)

    # The server-wide budget is for nodes without their own: tiny, so it is never used.
    return run_manager(on_cluster, 1 * MiB, ManagerSettings(**{"max_loaded_models": 0, **settings}))


async def use(manager: ModelManager, spec: ModelSpec) -> None:
    async with manager.acquire(spec) as model:
        request = Request(request_id="r", prompt="hi", params=SamplingParams(max_tokens=1))
        async for _ in model.engine.generate(request):
            pass


def nodes_of(manager: ModelManager) -> dict[str, str]:
    return {m.name: m.node.name for m in manager.loaded()}


def test_models_go_where_they_fit_and_evict_only_on_their_node() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        for name in ("a", "b", "c"):  # 110 MiB each, to the node with most free room.
            await use(manager, fake_spec(name))
        assert nodes_of(manager) == {"a": "big", "b": "big", "c": "small"}
        await use(manager, fake_spec("d"))  # No room anywhere: the cheapest eviction.
        # Big is 30 MiB short (80 free), small 70 (40 free): big gives up its least
        # recently used model, a; nothing on small moves.
        assert nodes_of(manager) == {"b": "big", "c": "small", "d": "big"}
        assert [e.is_closed for e in runtime.engines] == [True, False, False, False]

    runtime = run(body, [BIG, SMALL])
    assert [node for _, node in runtime.placements] == ["big", "big", "small", "big"]


def test_a_model_that_fits_only_the_big_node_goes_there() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        await use(manager, fake_spec("small-one", size=20 * MiB))  # Fits both: big, freer.
        await use(manager, fake_spec("large", size=200 * MiB))  # 210: big only.
        assert nodes_of(manager) == {"small-one": "big", "large": "big"}
        await use(manager, fake_spec("large2", size=200 * MiB))  # Evicts on big, not small.
        assert nodes_of(manager) == {"large2": "big"}

    run(body, [SMALL, BIG])


def test_the_count_limit_is_per_node() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        for name in ("a", "b", "c"):  # Tiny models: only the count (1 per node) limits.
            await use(manager, fake_spec(name, size=1 * MiB))
        assert nodes_of(manager) == {"b": "small", "c": "big"}  # c evicted a on big.

    runtime = run(body, [BIG, SMALL], max_loaded_models=1)
    assert [node for _, node in runtime.placements] == ["big", "small", "big"]


def test_larger_than_every_node_is_refused_naming_the_largest_budget() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        with pytest.raises(InsufficientMemory, match="largest node's budget is 300 MiB"):
            await use(manager, fake_spec("huge", size=400 * MiB))

    runtime = run(body, [BIG, SMALL])
    assert not runtime.placements


def test_no_node_alive_is_a_503() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        with pytest.raises(NodeUnavailable, match="none is alive"):
            await use(manager, fake_spec("a"))

    run(body, [])


def test_a_lost_model_loads_again_on_another_node() -> None:
    async def body(manager: ModelManager, runtime: FakeRuntime) -> None:
        await use(manager, fake_spec("a", size=200 * MiB))
        assert nodes_of(manager) == {"a": "big"}
        runtime.engines[0].crash()
        runtime.node_list = [SMALL, Node(id="big2", name="big2", budget_bytes=300 * MiB)]
        await use(manager, fake_spec("a", size=200 * MiB))  # Its node is gone: big2 takes it.
        assert nodes_of(manager) == {"a": "big2"}

    run(body, [BIG, SMALL])
