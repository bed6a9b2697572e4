"""A soak: 1,000 mixed requests (a third of streams cut by the client, malformed bodies
interleaved) leave the server answering, no sequence in any engine, and the memory of
its process tree where it was after the first hundred."""

from __future__ import annotations

import concurrent.futures
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from server_helpers import Server, running_server

NUM_REQUESTS = 1000
NUM_WARMUP = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Server:
    folder = tmp_path_factory.mktemp("soak")
    with running_server(folder, str(tiny_model_path), "--served-model-name", "tiny") as server:
        yield server  # type: ignore[misc]


def tree_rss(server: Server) -> int:
    processes = [psutil.Process(server.process.pid), *server.workers()]
    return sum(p.memory_info().rss for p in processes)


def engine_load(server: Server) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    names = ("llmport_num_requests_running{", "llmport_num_requests_waiting{")
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(names))


def one_request(http: httpx.Client, index: int) -> str:
    """One request of a kind chosen by ``index``; returns what happened."""
    rng = random.Random(index)
    prompt = f"request {index} " + " ".join(
        rng.choice(["alpha", "beta", "gamma"]) for _ in range(20)
    )
    kind = rng.random()
    if kind < 0.15:  # Malformed: broken JSON, wrong types, limits, unknown models.
        body = rng.choice([
            b"{not json", b"[]", b'{"model": 5}', b'{"model": "tiny", "prompt": {"a": 1}}',
            b'{"model": "tiny", "prompt": "x", "n": 100000000}',
            b'{"model": "tiny", "prompt": "x", "max_tokens": -3}',
            b'{"model": "nope", "prompt": "x"}',
        ])  # fmt: skip
        response = http.post("/v1/completions", content=body,
                             headers={"content-type": "application/json"})  # fmt: skip
        assert 400 <= response.status_code < 500, response.text
        return "malformed"
    if kind < 0.45:
        body = {"model": "tiny", "prompt": prompt, "max_tokens": 8}
        response = http.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return "whole"
    chat = kind < 0.7
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = {"model": "tiny", "max_tokens": 48, "stream": True}
    body |= {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}
    cut = rng.random() < 0.3
    with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        for number, line in enumerate(response.iter_lines()):
            assert '"error"' not in line, line
            if cut and number >= 2:
                return "cut"  # Leaving the block closes the connection mid-stream.
    return "streamed"


def test_a_thousand_mixed_requests_leave_nothing_behind(server: Server) -> None:
    kinds: Counter[str] = Counter()
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            kinds.update(pool.map(lambda i: one_request(http, i), range(NUM_WARMUP)))
            baseline = tree_rss(server)
            rest = range(NUM_WARMUP, NUM_REQUESTS)
            kinds.update(pool.map(lambda i: one_request(http, i), rest))
        deadline = time.monotonic() + 30
        while engine_load(server):
            assert time.monotonic() < deadline, "sequences left in an engine"
            time.sleep(0.1)
        answer = http.post("/v1/completions", json={"model": "tiny", "prompt": "hi",
                                                    "max_tokens": 8})  # fmt: skip
        assert answer.status_code == 200
    final = tree_rss(server)
    print(f"kinds {dict(kinds)}; RSS after {NUM_WARMUP}: {baseline >> 20} MiB, "
          f"after {NUM_REQUESTS}: {final >> 20} MiB")  # fmt: skip
    assert sum(kinds.values()) == NUM_REQUESTS and kinds["cut"] > 50
    assert final <= baseline * 1.10
