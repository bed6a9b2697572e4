"""A Ray node's budget and GPUs from its own resources and labels, and which addresses
are loopback (where Ray's address rewrite must be kept off)."""

from __future__ import annotations

from typing import Any

import pytest

from llmport.runtime.ray.cluster import is_loopback
from llmport.runtime.ray.nodes import BUDGET_LABEL, node_from_ray, nodes_from_ray

NODE_ID = "ab12cd" + "0" * 50


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "NodeID": NODE_ID,
        "Alive": True,
        "NodeManagerAddress": "10.0.0.7",
        "Resources": {"CPU": 8.0, "memory": 16.0 * (1 << 30), "GPU": 2.0},
        "Labels": {},
    }
    return {**base, **fields}


def test_the_budget_label_wins_over_the_memory_resource() -> None:
    node = node_from_ray(entry(Labels={BUDGET_LABEL: "12GiB"}))
    assert node is not None
    assert node.budget_bytes == 12 << 30 and node.num_gpus == 2
    assert node.name == "10.0.0.7/ab12cd" and node.id == NODE_ID


def test_without_a_label_the_memory_resource_is_the_budget() -> None:
    node = node_from_ray(entry())
    assert node is not None and node.budget_bytes == 16 << 30


@pytest.mark.parametrize(
    "fields",
    [
        {"Alive": False},
        {"Resources": {"CPU": 1.0}},  # No memory declared: nothing to place there.
        {"Labels": {BUDGET_LABEL: "lots"}},  # A label that is not a size.
    ],
)
def test_dead_or_budgetless_nodes_are_not_offered(fields: dict[str, Any]) -> None:
    assert node_from_ray(entry(**fields)) is None
    assert nodes_from_ray([entry(**fields), entry(NodeID="ff" * 28)])[0].id == "ff" * 28


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1:6379", True), ("localhost:6379", True), ("[::1]:6379", True),
     ("10.0.0.7:6379", False), ("head.example:6379", False), ("auto", False)],
)  # fmt: skip
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
