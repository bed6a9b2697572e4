"""A Ray cluster's nodes as llmport sees them: each one's memory budget and GPUs.

A node says how much memory models may use on it with the label
``llmport.memory-budget`` (``ray start --labels='{"llmport.memory-budget": "12GiB"}'``);
without one, its Ray ``memory`` resource (``ray start --memory``; by default Ray's share
of the node's RAM) is its budget. GPUs are Ray's ``GPU`` resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmport.runtime.base import Node
from llmport.sizes import parse_size

#: The node label that declares a node's budget for models.
BUDGET_LABEL = "llmport.memory-budget"


def node_from_ray(entry: Mapping[str, Any]) -> Node | None:
    """A ``ray.nodes()`` entry as a Node; None for a dead node or one with no memory."""
    if not entry.get("Alive"):
        return None
    resources: Mapping[str, float] = entry.get("Resources") or {}
    labels: Mapping[str, str] = entry.get("Labels") or {}
    declared = labels.get(BUDGET_LABEL)
    try:
        budget = parse_size(declared) if declared else int(resources.get("memory", 0))
    except ValueError:
        return None  # A label that is not a size: the node is not offered to models.
    if budget <= 0:
        return None
    node_id = str(entry["NodeID"])
    address = str(entry.get("NodeManagerAddress") or entry.get("NodeName") or "node")
    return Node(
        id=node_id,
        name=f"{address}/{node_id[:6]}",
        budget_bytes=budget,
        num_gpus=int(resources.get("GPU", 0)),
    )


def nodes_from_ray(entries: Iterable[Mapping[str, Any]]) -> list[Node]:
    return [node for entry in entries if (node := node_from_ray(entry)) is not None]
