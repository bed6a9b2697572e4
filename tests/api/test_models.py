"""Many models behind one port: the memory budget, crashes, and steady memory."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from pathlib import Path

import httpx
import psutil
import pytest

from llmport.config import EngineConfig
from llmport.engines.llama_cpp.memory import plan
from llmport.models.resolver import Resolver
from server_helpers import Server, running_server


def estimated_bytes(path: Path) -> int:
    spec = Resolver(path.parent).resolve_now(str(path))
    return plan(spec, EngineConfig(), 1 << 40).memory.total_bytes


def loaded_models(server: Server) -> int:
    text = httpx.get(f"{server.base_url}/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith("llmport_loaded_models "))
    return int(float(line.split()[1]))


def test_budget_for_two_of_three_models_serves_all_three_with_two_loaded(
    tmp_path: Path, model_paths: list[Path]
) -> None:
    budget = int(2.5 * max(estimated_bytes(p) for p in model_paths))
    args = ("--memory-budget", str(budget), "--max-loaded-models", "0")
    with running_server(tmp_path, *args) as server:
        client = server.openai("x")
        most = 0
        for round_ in range(3):
            for path in model_paths:
                result = client.completions.create(
                    model=str(path), prompt=f"round {round_}", max_tokens=4
                )
                assert result.choices[0].finish_reason in {"length", "stop"}
                most = max(most, loaded_models(server))
        assert most == 2
        assert "to make room for" in server.log()


def test_a_model_that_can_never_fit_is_refused_naming_sizes(
    tmp_path: Path, model_paths: list[Path]
) -> None:
    budget = estimated_bytes(model_paths[0]) // 2
    with running_server(tmp_path, "--memory-budget", str(budget)) as server:
        response = httpx.post(
            f"{server.base_url}/v1/completions", json={"model": str(model_paths[0]), "prompt": "x"}
        )
        assert response.status_code == 507
        error = response.json()["error"]
        assert error["code"] == "insufficient_memory"
        assert "MiB" in error["message"] and "budget" in error["message"]


def worker_serving(server: Server, path: Path) -> psutil.Process:
    """The worker process that has ``path`` mapped."""
    for process in server.workers():
        if any(m.path == str(path) for m in process.memory_maps()):
            return process
    raise AssertionError(f"no worker maps {path}")


@pytest.mark.slow
def test_killing_one_workers_fails_only_its_stream(
    tmp_path: Path, model_paths: list[Path], gemma_model_path: Path
) -> None:
    victim = tmp_path / "victim.gguf"  # A Gemma copy: slow enough to kill mid-stream.
    shutil.copyfile(gemma_model_path, victim)
    survivor = str(model_paths[0])
    with running_server(tmp_path, "--max-model-len", "4096") as server:
        url = f"{server.base_url}/v1/completions"
        doomed = {"model": str(victim), "prompt": "a", "max_tokens": 3000, "ignore_eos": True}
        other = {"model": survivor, "prompt": "b", "max_tokens": 2000, "ignore_eos": True}
        with (
            httpx.stream("POST", url, json={**doomed, "stream": True}) as doomed_stream,
            httpx.stream("POST", url, json={**other, "stream": True}) as other_stream,
        ):
            doomed_lines, other_lines = doomed_stream.iter_lines(), other_stream.iter_lines()
            next(doomed_lines), next(other_lines)
            worker_serving(server, victim).kill()
            events = [line for line in doomed_lines if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]"
            error = json.loads(events[-2].removeprefix("data: "))["error"]
            assert error["code"] == "worker_crashed" and "SIGKILL" in error["message"]
            texts = [
                json.loads(line.removeprefix("data: "))
                for line in other_lines
                if line.startswith("data: {")
            ]
            assert texts[-1]["choices"][0]["finish_reason"] == "length"
        again = httpx.post(url, json={**doomed, "max_tokens": 3}, timeout=60)
        assert again.status_code == 200, again.text
        assert again.json()["usage"]["completion_tokens"] == 3


def tree_rss(server: Server) -> int:
    processes = [psutil.Process(server.process.pid), *server.workers()]
    return sum(p.memory_info().rss for p in processes)


async def mixed_request(client: httpx.AsyncClient, model: str, rng: random.Random) -> None:
    kind = rng.choice(["stream", "whole", "chat", "disconnect"])
    body: dict[str, object] = {"model": model, "max_tokens": rng.randint(1, 24)}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": f"hi {rng.random()}"}]
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return
    body["prompt"] = f"request {rng.random()} " * rng.randint(1, 8)
    if kind == "whole":
        response = await client.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return
    body.update(stream=True, max_tokens=400 if kind == "disconnect" else body["max_tokens"])
    async with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        async for _ in response.aiter_lines():
            if kind == "disconnect" and rng.random() < 0.2:
                return  # Hang up mid-stream.


async def run_requests(server: Server, models: list[str], count: int, seed: int) -> None:
    rng = random.Random(seed)
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:

        async def one() -> None:
            async with limit:
                await mixed_request(client, rng.choice(models), rng)

        await asyncio.gather(*(one() for _ in range(count)))


def test_memory_is_steady_over_1000_mixed_requests(tmp_path: Path, model_paths: list[Path]) -> None:
    models = [str(p) for p in model_paths[:2]]
    with running_server(tmp_path) as server:
        asyncio.run(run_requests(server, models, 100, seed=1))
        after_100 = tree_rss(server)
        asyncio.run(run_requests(server, models, 900, seed=2))
        time.sleep(0.5)
        after_1000 = tree_rss(server)
        metrics = httpx.get(f"{server.base_url}/metrics").text
        for line in metrics.splitlines():
            if line.startswith(("llmport_num_requests_running{", "llmport_num_requests_waiting{")):
                assert float(line.split()[-1]) == 0, line
        print(f"RSS after 100: {after_100 >> 20} MiB, after 1000: {after_1000 >> 20} MiB")
        assert abs(after_1000 - after_100) <= 0.10 * after_100
