"""``llmport serve --ray`` on a real two-node Ray cluster made in the test (loopback, fast
health checks), each node with a budget for one Gemma worker but not two: placement,
eviction per node, a hung worker and a lost node failing only their own streams, and
the lost model served again from a surviving node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from ray.cluster_utils import Cluster

from server_helpers import Server, running_server

pytestmark = pytest.mark.slow

#: Gemma at --max-model-len 2048 is estimated at ~800 MiB: one fits a node, two do not.
NODE_BUDGET = "1200MiB"
NODE_ARGS: dict[str, Any] = {
    "num_cpus": 1,
    "object_store_memory": 80 << 20,
    "node_ip_address": "127.0.0.1",
    "labels": {"llmport.memory-budget": NODE_BUDGET},
}
HEALTH_CHECKS = {
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 0,
}


def actor_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "WorkerActor" in cmdline:
            found.append(process)
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"include_dashboard": False, "_system_config": HEALTH_CHECKS,
                        **NODE_ARGS},
    )  # fmt: skip
    cluster.add_node(**NODE_ARGS)
    try:
        yield cluster
    finally:
        cluster.shutdown()
    deadline = time.monotonic() + 10
    while actor_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not actor_processes(), "a worker actor outlived the cluster"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, gemma_model_path: Path) -> Path:
    """Three Gemma models by three names (hard links: each its own model)."""
    folder = tmp_path_factory.mktemp("ray-models")
    for name in ("a", "b", "c"):
        os.link(gemma_model_path, folder / f"{name}.gguf")
    return folder


@pytest.fixture(scope="module")
def server(
    cluster: Cluster, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ray-server")
    args = ("--ray", cluster.address, "--models-dir", str(models), "--max-model-len", "2048",
            "--ray-heartbeat-timeout", "2", "--keep-alive", "-1")  # fmt: skip
    with running_server(tmp, *args, timeout=120) as server:
        yield server


def placed(server: Server) -> dict[str, str]:
    """Loaded model -> the node ps shows it on."""
    models = httpx.get(f"{server.base_url}/api/ps").json()["models"]
    return {m["name"]: m["node"] for m in models}


def node_name(node: Any) -> str:
    return f"127.0.0.1/{node.node_id[:6]}"


def complete(server: Server, model: str, max_tokens: int = 4) -> httpx.Response:
    body = {"model": model, "prompt": "The capital of France is", "max_tokens": max_tokens}
    return httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=120)


class Stream:
    """A long streaming completion read in a thread: its events and when it ended."""

    def __init__(self, server: Server, model: str, max_tokens: int) -> None:
        self.body = {"model": model, "prompt": "Once", "max_tokens": max_tokens,
                     "ignore_eos": True, "stream": True}  # fmt: skip
        self.url = f"{server.base_url}/v1/completions"
        self.events: list[str] = []
        self.started = threading.Event()
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._read)
        self.thread.start()
        assert self.started.wait(120), "the stream never started"

    def _read(self) -> None:
        with httpx.stream("POST", self.url, json=self.body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(line.removeprefix("data: "))
                    self.started.set()
        self.ended_at = time.monotonic()
        self.started.set()

    def join(self) -> None:
        self.thread.join(180)
        assert not self.thread.is_alive()

    @property
    def error(self) -> dict[str, Any]:
        assert self.events[-1] == "[DONE]"
        error: dict[str, Any] = json.loads(self.events[-2])["error"]
        return error

    @property
    def finish_reason(self) -> str | None:
        chunks = [json.loads(e) for e in self.events if e.startswith("{")]
        reason: str | None = chunks[-1]["choices"][0]["finish_reason"]
        return reason


def test_two_models_land_on_different_nodes_and_answer_through_one_port(
    server: Server, cluster: Cluster
) -> None:
    client = server.openai()
    first = client.completions.create(model="a", prompt="The capital of France is", max_tokens=6)
    stream = client.chat.completions.create(
        model="b", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert first.choices[0].text and "".join(pieces)
    nodes = placed(server)
    assert set(nodes) == {"a", "b"} and nodes["a"] != nodes["b"]
    all_nodes = {node_name(cluster.head_node), *map(node_name, cluster.worker_nodes)}
    assert set(nodes.values()) == all_nodes
    # Ray starts workers at niceness 15; a serving worker takes its normal share of CPU.
    assert [p.nice() for p in actor_processes()] == [0, 0]
    cards = {m.id: m for m in client.models.list().data}
    assert cards["a"].model_extra and cards["a"].model_extra["node"] == nodes["a"]
    host = server.base_url.removeprefix("http://")
    command = [sys.executable, "-m", "llmport.cli.main", "ps"]
    env = {**os.environ, "LLMPORT_HOST": host}
    ps = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    header, *rows = ps.stdout.splitlines()
    assert header.split()[-1] == "NODE"
    assert {row.split()[0]: row.split()[-1] for row in rows} == nodes


def test_a_third_model_evicts_the_idle_one_on_its_node(server: Server) -> None:
    before = placed(server)
    complete(server, "b")  # "a" is now the least recently used.
    response = complete(server, "c")
    assert response.status_code == 200, response.text
    after = placed(server)
    assert set(after) == {"b", "c"}
    assert after["c"] == before["a"] and after["b"] == before["b"]
    assert "unloading a to make room for c" in server.log()


def test_a_hung_worker_fails_only_its_streams_within_seconds(server: Server) -> None:
    """A worker that stops answering (SIGSTOP: as a frozen node looks) is caught by the
    heartbeat (2 s here), long before Ray's health check would."""
    nodes = placed(server)
    doomed, other = Stream(server, "c", 4000), Stream(server, "b", 60)
    frozen = next(p for p in actor_processes()
                  if any(m.path.endswith("/c.gguf") for m in p.memory_maps()))  # fmt: skip
    frozen.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        doomed.join()
        other.join()
    finally:
        if frozen.is_running():
            frozen.send_signal(signal.SIGCONT)
    assert doomed.ended_at - stopped_at < 6
    error = doomed.error
    assert error["code"] == "worker_crashed"
    assert nodes["c"] in error["message"] and "stopped answering" in error["message"]
    assert other.finish_reason == "length"
    again = complete(server, "c")
    assert again.status_code == 200, again.text


def test_a_lost_node_fails_only_its_streams_and_its_model_moves(
    server: Server, cluster: Cluster
) -> None:
    worker_node = next(iter(cluster.worker_nodes))
    lost = node_name(worker_node)
    deadline = time.monotonic() + 30
    while len(set(placed(server).values())) < 2:  # Until the last test's node is trusted.
        assert time.monotonic() < deadline, placed(server)
        for model in ("b", "c"):
            assert complete(server, model).status_code == 200
    nodes = placed(server)
    on_lost = next(name for name, node in nodes.items() if node == lost)
    survivor = next(name for name, node in nodes.items() if node != lost)
    doomed, other = Stream(server, on_lost, 4000), Stream(server, survivor, 60)
    removed_at = time.monotonic()
    cluster.remove_node(worker_node)
    doomed.join()
    other.join()
    assert doomed.ended_at - removed_at < 5
    error = doomed.error
    assert error["code"] == "worker_crashed" and lost in error["message"]
    assert other.finish_reason == "length"

    again = complete(server, on_lost)  # Placed on the surviving node, evicting the idle one.
    assert again.status_code == 200, again.text
    assert placed(server) == {on_lost: node_name(cluster.head_node)}

    back = cluster.add_node(**NODE_ARGS)  # A node that comes back (Ray gives it a new id).
    response = complete(server, survivor)
    assert response.status_code == 200, response.text
    assert placed(server)[survivor] == node_name(back)
