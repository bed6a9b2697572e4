"""HTTP serving benchmark: ``llmport serve`` against its peers, the same clients for all.

1. N concurrent streaming clients (default 16) on one model: aggregate output tokens/s
   and time to first token, for llmport, llama.cpp's ``llama-server`` (continuous
   batching, ``--parallel N``) and ``python -m llama_cpp.server`` (one request at a
   time). Servers run one after another, never together.
2. Model swaps: with ``--max-loaded-models 1`` and two models, every request swaps;
   the latency of a 1-token request, with the warm spare worker and without.

    .venv/bin/python benchmarks/serve.py --llama-server /work/peers/llama.cpp-build/bin/llama-server

llama_cpp.server needs ``pip install sse-starlette starlette-context`` in the venv; it
runs with ``--interrupt_requests False``, else each new request cancels the running one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import RunResult, free_port, running, stream_one
from llmport.store.embedded import default_cache_dir, embedded_model_path


async def run_clients(
    base: str, model: str, num_clients: int, max_tokens: int, run_id: int
) -> RunResult:
    # Unique from the first token per run, so no server answers from its prompt cache.
    prompts = [
        f"{run_id * 1000 + i} asks: write a long story about the number {i * 7919} and its friends."
        for i in range(num_clients)
    ]
    limits = httpx.Limits(max_connections=num_clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(stream_one(client, model, p, max_tokens) for p in prompts))
        seconds = time.perf_counter() - started
    reasons = {reason for _, _, reason in results}
    if reasons != {"length"}:
        raise RuntimeError(f"streams ended with {reasons}, not all 'length'")
    return RunResult(seconds, [ttft for ttft, _, _ in results], num_clients * max_tokens)


def best_of(base: str, model: str, args: argparse.Namespace) -> RunResult:
    asyncio.run(run_clients(base, model, 1, 8, 0))  # Warm-up (load, first allocation).
    runs = [
        asyncio.run(run_clients(base, model, args.clients, args.max_tokens, run + 1))
        for run in range(args.repeats)
    ]
    return max(runs, key=lambda r: r.tokens_per_second)


def peers(args: argparse.Namespace, model: Path) -> list[tuple[str, list[str], str, int]]:
    threads = str(args.threads)
    found: list[tuple[str, list[str], str, int]] = []
    port = free_port()
    found.append(
        (
            "llmport serve",
            [sys.executable, "-m", "llmport.cli.main", "serve", str(model), "--port", str(port),
             "--served-model-name", "bench", "--max-num-seqs", str(args.clients),
             "--max-model-len", "4096"],
            "/health",
            port,
        )
    )  # fmt: skip
    if args.llama_server:
        port = free_port()
        found.append(
            (
                "llama-server",
                [args.llama_server, "-m", str(model), "--port", str(port), "-c",
                 str(args.clients * 1024), "--parallel", str(args.clients), "--threads", threads,
                 "--threads-batch", threads, "--alias", "bench"],
                "/health",
                port,
            )
        )  # fmt: skip
    if not args.skip_llama_cpp_server:
        port = free_port()
        found.append(
            (
                "llama_cpp.server",
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port",
                 str(port), "--n_ctx", "4096", "--n_threads", threads, "--n_threads_batch",
                 threads, "--model_alias", "bench", "--interrupt_requests", "False"],
                "/v1/models",
                port,
            )
        )  # fmt: skip
    return found


def throughput(args: argparse.Namespace, model: Path) -> None:
    print(f"\n1. {args.clients} streaming clients, {args.max_tokens} tokens each, best of "
          f"{args.repeats}")  # fmt: skip
    print(f"{'server':18} {'tokens/s':>9} {'TTFT p50':>9} {'TTFT p95':>9} {'TTFT max':>9}")
    rows = {}
    for name, command, ready, port in peers(args, model):
        with running(command, ready, port, dict(os.environ)) as base:
            result = best_of(base, "bench", args)
        rows[name] = result
        ttfts = sorted(result.ttfts)
        p95 = ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))]
        print(f"{name:18} {result.tokens_per_second:9.1f} {statistics.median(ttfts):8.2f}s "
              f"{p95:8.2f}s {ttfts[-1]:8.2f}s")  # fmt: skip
    ours = rows["llmport serve"].tokens_per_second
    for name, result in rows.items():
        if name != "llmport serve":
            print(f"llmport / {name}: {ours / result.tokens_per_second:.2f}x tokens/s")


def swaps(args: argparse.Namespace, model: Path) -> None:
    print(f"\n2. Model swaps (--max-loaded-models 1, two models, {args.swaps} requests)")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "copy.gguf"
        shutil.copyfile(model, copy)
        for spare in ("true", "false"):
            port = free_port()
            command = [sys.executable, "-m", "llmport.cli.main", "serve", "--port", str(port),
                       "--max-loaded-models", "1", "--max-model-len", "4096"]  # fmt: skip
            env = {**os.environ, "LLMPORT_WARM_SPARE": spare}
            with running(command, "/health", port, env) as base:
                latencies = []
                for i in range(args.swaps):
                    target = str(model if i % 2 else copy)
                    started = time.perf_counter()
                    response = httpx.post(
                        f"{base}/v1/completions",
                        json={"model": target, "prompt": "hi", "max_tokens": 1},
                        timeout=120,
                    )
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - started)
                    time.sleep(1.5)  # Let the new spare finish starting, as between real swaps.
            print(f"warm spare {spare:5}: swap + 1 token median {statistics.median(latencies):.2f}s"
                  f" (min {min(latencies):.2f}s, max {max(latencies):.2f}s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: embedded Gemma 3 270M)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--llama-server", help="path to llama.cpp's llama-server binary")
    parser.add_argument("--skip-llama-cpp-server", action="store_true")
    parser.add_argument("--swaps", type=int, default=8, help="0 skips the swap benchmark")
    args = parser.parse_args()
    model = args.model or embedded_model_path(default_cache_dir())
    throughput(args, model)
    if args.swaps:
        swaps(args, model)


if __name__ == "__main__":
    main()
