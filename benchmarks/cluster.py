"""What a Ray-placed worker costs against a local one, on the same model in one run.

Starts a two-node Ray cluster on loopback (``ray.cluster_utils.Cluster``), then two
servers on the embedded Gemma: ``llmport serve`` (a local worker) and ``llmport serve
--ray ADDRESS`` (a worker actor on a node). Rounds alternate the two so a noisy spell
hits both. It prints:

- the per-token streaming cost: each stream's mean gap between tokens, for 1 and 4
  concurrent streams (target: the Ray worker within 1 ms per token of the local one);
- the time to place and load the model (an unload, then a 1-token request) against a
  local load.

    .venv/bin/python benchmarks/cluster.py [--tokens 256] [--rounds 3] [--loads 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import httpx

from common import GEMMA_EOG_IDS, free_port, running
from llmport.store.embedded import default_cache_dir, embedded_model_path

NODE_ARGS = {
    "num_cpus": 1,
    "object_store_memory": 80 << 20,
    "node_ip_address": "127.0.0.1",
    "labels": {"llmport.memory-budget": "4GiB"},
}


async def token_gaps(base: str, model: str, tokens: int, prompt: str) -> float:
    """Mean seconds between one stream's tokens (its first token excluded)."""
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "ignore_eos": True, "logit_bias": dict.fromkeys(GEMMA_EOG_IDS, -100.0),
            "stream": True}  # fmt: skip
    times = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=600) as client,
        client.stream("POST", "/v1/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0].get("text"):
                times.append(time.perf_counter())
    if len(times) < 2:
        raise RuntimeError(f"{base}: the stream gave {len(times)} tokens")
    return (times[-1] - times[0]) / (len(times) - 1)


async def per_token(base: str, model: str, tokens: int, streams: int) -> float:
    gaps = await asyncio.gather(
        *(token_gaps(base, model, tokens, f"Story {i}: once upon a time") for i in range(streams))
    )
    return statistics.median(gaps)


def load_seconds(base: str, model: str) -> float:
    """Unload ``model``, then time a 1-token request (placement, start and load)."""
    httpx.post(f"{base}/api/generate", json={"model": model, "keep_alive": 0}, timeout=60)
    started = time.perf_counter()
    body = {"model": model, "prompt": "Hi", "max_tokens": 1}
    response = httpx.post(f"{base}/v1/completions", json=body, timeout=300)
    response.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", type=int, default=4)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    model = str(embedded_model_path(default_cache_dir()))
    cluster = Cluster(initialize_head=True,
                      head_node_args={"include_dashboard": False, **NODE_ARGS})  # fmt: skip
    cluster.add_node(**NODE_ARGS)
    env = dict(os.environ)
    common = ["--max-model-len", "2048", "--keep-alive", "-1"]
    try:
        ports = free_port(), free_port()
        serve = [sys.executable, "-m", "llmport.cli.main", "serve"]
        with (
            running([*serve, "--port", str(ports[0]), *common], "/health", ports[0], env) as local,
            running([*serve, "--port", str(ports[1]), "--ray", cluster.address, *common],
                    "/health", ports[1], env) as placed,
        ):  # fmt: skip
            servers = {"local": local, "ray": placed}
            gaps: dict[tuple[str, int], list[float]] = {}
            for base in servers.values():
                asyncio.run(per_token(base, model, 8, 1))  # Load and warm up.
            for round_ in range(args.rounds):
                for streams in (1, 4):
                    for name, base in servers.items():
                        gap = asyncio.run(per_token(base, model, args.tokens, streams))
                        gaps.setdefault((name, streams), []).append(gap)
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
            loads: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.loads):
                for name, base in servers.items():
                    loads[name].append(load_seconds(base, model))
    finally:
        cluster.shutdown()

    print(f"\nper-token streaming cost, {args.tokens} tokens per stream, median of "
          f"{args.rounds} rounds (each round: the median stream's mean gap)")  # fmt: skip
    print(f"{'streams':>8} {'local ms/tok':>13} {'ray ms/tok':>11} {'ray - local':>12}")
    for streams in (1, 4):
        here = statistics.median(gaps[("local", streams)]) * 1e3
        there = statistics.median(gaps[("ray", streams)]) * 1e3
        print(f"{streams:>8} {here:>13.2f} {there:>11.2f} {there - here:>+11.2f}")
    here, there = statistics.median(loads["local"]), statistics.median(loads["ray"])
    print(f"\nplace and load (unload, then 1 token), median of {args.loads}: local "
          f"{here:.2f} s, ray {there:.2f} s ({there / here:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
