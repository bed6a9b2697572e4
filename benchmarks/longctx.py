"""Issue 14's goals in one run: ``llmport serve`` against llama.cpp's ``llama-server`` on
long distinct prompts, chats sharing a long system prompt, short prompts and model swaps.

Both servers run on the same model (default: the embedded Gemma 3 270M Q4_K_M) with the
same limits (16 sequences of 4,096 tokens, the same threads). Both stay up, and each
workload runs on one, then on the other, never on both at once, for ``--rounds`` rounds
that alternate which goes first; every figure is a median over the rounds, printed with
its ratio llmport / llama-server and the issue's target for it. See benchmarks/README.md.

    .venv/bin/python benchmarks/longctx.py \
        --llama-server /work/peers/llama.cpp-build/bin/llama-server
    .venv/bin/python benchmarks/longctx.py --scale 0.05 --swaps 2      # a quick smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from common import GEMMA_EOG_IDS, Server, free_port, server, stream_request
from llmport.store.embedded import default_cache_dir, embedded_model_path

WORKLOADS = ("long", "shared", "short", "swap")
MODEL_NAME = "bench"
MAX_MODEL_LEN = 4096
NUM_SEQS = 16
SWAP_GAP_S = 1.5  # Between swap requests, as between real ones (llmport's spare starts).

# Single tokens in Gemma's vocabulary with a leading space; all distinct, so prompt i can
# start with WORDS[i] and share no token with any other prompt after <bos>.
_WORDS = """
river apple stone cloud garden window silver forest candle bridge mountain ocean pencil
table mirror castle rabbit engine basket ladder harbor meadow pocket rocket saddle
tunnel valley wagon anchor blanket button camera desert dragon feather guitar hammer
island jacket kettle lemon magnet needle orange palace pepper pillow planet puzzle
ribbon shadow shovel spider sugar thunder ticket tiger tomato violin wallet winter
yellow zebra barrel bottle branch bucket cabbage carpet cherry circle copper cotton
crystal dinner doctor eagle finger flower forest glass grape honey horse insect jungle
kitten ladder market marble melon monkey museum music napkin nickel noodle office
onion oyster paper parrot peanut pirate potato powder prison pumpkin radio rainbow
salad sandal school season shield signal singer spoon square stable statue summer
sunset temple thread tower travel turtle umbrella village volcano water whale wheel
window winner wizard wooden yogurt
"""
WORDS = list(dict.fromkeys(_WORDS.split()))  # Distinct, in order.


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- sizes and prompts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    clients: int
    long_tokens: int
    system_tokens: int
    user_tokens: int
    short_tokens: int
    long_out: int = 64
    shared_out: int = 32
    short_out: int = 64

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        return cls(
            clients=max(2, min(NUM_SEQS, round(NUM_SEQS * scale))),
            long_tokens=max(24, round(4000 * scale)),
            system_tokens=max(24, round(2000 * scale)),
            user_tokens=max(8, round(200 * scale)),
            short_tokens=max(12, round(45 * scale)),
        )


@dataclass
class Prompts:
    warmup: str
    long: list[str]
    system: str
    users: list[list[str]]  # One list per run of the shared workload: [cold, warm].
    short: list[str]


def items(first: str, seed: int, count: int) -> list[str]:
    """``first``, then numbered random words: 'first apple stone ... (10) river ...'."""
    rng = random.Random(seed)
    out = [first]
    for k in range(1, count):
        out.append(f"({k})" if k % 10 == 0 else rng.choice(WORDS))
    return out


async def count_tokens(client: httpx.AsyncClient, text: str) -> int:
    response = await client.post(
        "/tokenize", json={"model": MODEL_NAME, "prompt": text, "add_special_tokens": False}
    )
    response.raise_for_status()
    count: int = response.json()["count"]
    return count


async def fit(client: httpx.AsyncClient, words: list[str], target: int) -> str:
    """The longest prefix of ``words`` (joined by spaces) of at most ``target`` tokens, to
    within 2%, as the server's own tokenizer counts them."""
    n = min(len(words), max(1, target * 2 // 3))
    text = " ".join(words[:n])
    count = await count_tokens(client, text)
    for _ in range(8):
        if 0.98 * target <= count <= target or (n == len(words) and count <= target):
            break
        n = max(1, min(len(words), int(n * target / count)))
        text = " ".join(words[:n])
        count = await count_tokens(client, text)
    while count > target and n > 1:
        n = max(1, n - max(1, (count - target) // 2))
        text = " ".join(words[:n])
        count = await count_tokens(client, text)
    return text


async def build_prompts(base: str, sizes: Sizes, round_index: int = 0) -> Prompts:
    """Every prompt of one round, fitted with llmport's ``/tokenize``; the same texts go to
    both servers. Prompts of the long and short workloads start with distinct words
    (WORDS[i]), so no two share a token after <bos>; the shared workload's system prompt
    starts with its own. Each round takes its own words and seeds, so no round reuses
    another's KV on either server."""
    n = sizes.clients
    offset = round_index * (2 * n + 2)
    seed0 = 100_000 * round_index
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:

        async def fitted(first: int, seed: int, target: int) -> str:
            word = WORDS[(first + offset) % len(WORDS)]
            return await fit(client, items(word, seed0 + seed, target), target)

        long = [fitted(i, 1000 + i, sizes.long_tokens) for i in range(n)]
        short = [fitted(n + i, 2000 + i, sizes.short_tokens) for i in range(n)]
        system = fitted(2 * n, 3000, sizes.system_tokens)
        users = [fitted(i, 4000 + i, sizes.user_tokens) for i in range(2 * n)]
        warmup = fitted(2 * n + 1, 5000, 12)
        texts = await asyncio.gather(*long, *short, system, *users, warmup)
    return Prompts(
        warmup=texts[-1],
        long=list(texts[:n]),
        short=list(texts[n : 2 * n]),
        system=texts[2 * n],
        users=[list(texts[2 * n + 1 : 3 * n + 1]), list(texts[3 * n + 1 : 4 * n + 1])],
    )


# -- requests -------------------------------------------------------------------------------


def sampling(max_tokens: int) -> dict[str, Any]:
    """Greedy, exactly ``max_tokens`` out (Gemma's end tokens banned and ``ignore_eos``, as
    serve.py asks), usage reported in the stream."""
    return {
        "model": MODEL_NAME,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "logit_bias": dict.fromkeys(GEMMA_EOG_IDS, -100.0),
        "stream_options": {"include_usage": True},
    }


def completion(prompt: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
    return "/v1/completions", {**sampling(max_tokens), "prompt": prompt}


def chat(system: str, user: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
    """A chat as plain text on ``/v1/completions``: the servers' chat templates differ for
    this GGUF (llama-server falls back to ChatML, whose markers are not tokens of Gemma's
    vocabulary), so a chat endpoint would not give both the same prompt."""
    return completion(f"{system}\n\nUser: {user}\nAssistant:", max_tokens)


@dataclass
class Load:
    """One batch of concurrent streams."""

    wall: float
    ttfts: list[float]
    output_tokens: int
    prompt_tokens: list[int]
    peak_rss: int | None = None
    idle_rss: int | None = None
    cpu_seconds: float | None = None  # Of the process holding the model, during the load.

    @property
    def ttft_p50(self) -> float:
        return statistics.median(self.ttfts)

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.wall


async def concurrent(base: str, requests: list[tuple[str, dict[str, Any]]]) -> Load:
    """Send every request at once; wall time from the first sent to the last token out."""
    limits = httpx.Limits(max_connections=len(requests) + 4)
    async with httpx.AsyncClient(base_url=base, timeout=3600, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(stream_request(client, p, b) for p, b in requests))
        wall = time.perf_counter() - started
    for (_, body), result in zip(requests, results, strict=True):
        completion_tokens = (result.usage or {}).get("completion_tokens")
        if result.finish_reason != "length" or completion_tokens != body["max_tokens"]:
            raise RuntimeError(
                f"a stream ended with {result.finish_reason!r} after {completion_tokens} "
                f"tokens, not 'length' after {body['max_tokens']}"
            )
    return Load(
        wall=wall,
        ttfts=[r.ttft for r in results],
        output_tokens=sum(body["max_tokens"] for _, body in requests),
        prompt_tokens=[int((r.usage or {}).get("prompt_tokens", 0)) for r in results],
    )


# -- peak RSS -------------------------------------------------------------------------------


def model_process(srv: Server, is_llmport: bool) -> psutil.Process:
    """The process that holds the model: llmport's worker (its child with the largest RSS;
    a warm spare has none of the model) or llama-server itself."""
    process = psutil.Process(srv.process.pid)
    if not is_llmport:
        return process
    children = process.children(recursive=True)
    if not children:
        raise RuntimeError("llmport serve has no worker process")
    return max(children, key=lambda child: child.memory_info().rss)


@contextmanager
def peak_rss(process: psutil.Process, every_s: float = 0.05) -> Iterator[list[int]]:
    """Sample ``process``'s RSS every ``every_s`` while the block runs; the list yielded
    holds the peak (bytes) once the block is done."""
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            try:
                peak[0] = max(peak[0], process.memory_info().rss)
            except psutil.Error:
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


# -- the servers ----------------------------------------------------------------------------


def llmport_command(args: argparse.Namespace, model: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "llmport.cli.main", "serve", str(model), "--port", str(port),
            "--served-model-name", MODEL_NAME, "--max-model-len", str(MAX_MODEL_LEN),
            "--max-num-seqs", str(NUM_SEQS), "--num-threads", str(args.threads),
            "--kv-layout", args.kv_layout]  # fmt: skip


def llama_server_command(args: argparse.Namespace, model: Path, port: int) -> list[str]:
    threads = str(args.threads)
    return [args.llama_server, "-m", str(model), "--port", str(port), "--alias", MODEL_NAME,
            "-c", str(NUM_SEQS * MAX_MODEL_LEN), "--parallel", str(NUM_SEQS),
            "--threads", threads, "--threads-batch", threads]  # fmt: skip


def llmport_swap_command(args: argparse.Namespace, folder: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "llmport.cli.main", "serve", "--port", str(port),
            "--models-dir", str(folder), "--max-loaded-models", "1",
            "--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", str(NUM_SEQS),
            "--num-threads", str(args.threads), "--kv-layout", args.kv_layout]  # fmt: skip


def llama_server_swap_command(args: argparse.Namespace, folder: Path, port: int) -> list[str]:
    # Router mode: no -m; each model runs in its own llama-server instance, which inherits
    # these flags; --models-max 1 unloads the least recently used one to load another.
    threads = str(args.threads)
    return [args.llama_server, "--port", str(port), "--models-dir", str(folder),
            "--models-max", "1", "-c", str(NUM_SEQS * MAX_MODEL_LEN),
            "--parallel", str(NUM_SEQS), "--threads", threads,
            "--threads-batch", threads]  # fmt: skip


def load_note(srv: Server) -> str:
    """llmport's own line about the model it loaded (context, memory), from its log."""
    text = srv.log_path.read_text(errors="replace")
    found = re.findall(r"(loaded \S+ \(\w+\) in .*)", text)
    return found[-1].strip() if found else "no load line in the log"


Sides = dict[str, dict[str, list[Load]]]  # server -> workload -> one Load per round


def tree_cpu_seconds(servers: dict[str, Server]) -> float:
    """CPU time used so far by every server process, workers and spares included."""
    total = 0.0
    for srv in servers.values():
        with suppress(psutil.Error):
            root = psutil.Process(srv.process.pid)
            for process in (root, *root.children(recursive=True)):
                with suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
    return total


def settle(servers: dict[str, Server], quiet_cpu_s: float = 0.05, limit_s: float = 30) -> None:
    """Wait until the servers use (almost) no CPU, so neither side's workload starts beside
    the other's leftovers (a spare worker importing, a prompt cache being written)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(servers)
        time.sleep(0.5)
        if tree_cpu_seconds(servers) - before < quiet_cpu_s:
            return


def run_workload(
    name: str, srv: Server, workload: str, prompts: Prompts, sizes: Sizes
) -> dict[str, Load]:
    """One workload on one server: ``long`` (with its RSS), ``shared`` (a cold run, then a
    warm one with new user messages) or ``short``."""
    if workload == "long":
        holder = model_process(srv, name == "llmport")
        idle = holder.memory_info().rss
        log(f"{name}: long ({sizes.clients} x ~{sizes.long_tokens} tokens), pid {holder.pid}")
        requests = [completion(p, sizes.long_out) for p in prompts.long]
        cpu_before = sum(holder.cpu_times()[:2])
        with peak_rss(holder) as peak:
            load = asyncio.run(concurrent(srv.base, requests))
        load.cpu_seconds = sum(holder.cpu_times()[:2]) - cpu_before
        load.peak_rss, load.idle_rss = peak[0], idle
        return {"long": load}
    if workload == "shared":
        results = {}
        for run, users in zip(("shared cold", "shared warm"), prompts.users, strict=True):
            log(f"{name}: {run}")
            requests = [chat(prompts.system, u, sizes.shared_out) for u in users]
            results[run] = asyncio.run(concurrent(srv.base, requests))
        return results
    log(f"{name}: short")
    requests = [completion(p, sizes.short_out) for p in prompts.short]
    return {"short": asyncio.run(concurrent(srv.base, requests))}


def run_rounds(args: argparse.Namespace, model: Path, sizes: Sizes, state: dict[str, Any]) -> Sides:
    """The long, shared and short workloads (those asked for), ``--rounds`` times, on both
    servers at once: each workload runs on one server, then on the other, first one then
    the other in turn, so a drift of the machine's speed (shared, noisy) falls on both
    sides alike. Each round has prompts of its own."""
    workloads = [w for w in args.workloads if w != "swap"]
    commands = {"llmport": llmport_command(args, model, free_port())}
    if args.llama_server:
        commands["llama-server"] = llama_server_command(args, model, free_port())
    sides: Sides = {name: {} for name in commands}
    if not workloads:
        return sides
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, command in commands.items():
            log(f"{name}: starting {' '.join(command)}")
            port = int(command[command.index("--port") + 1])
            servers[name] = stack.enter_context(server(command, "/health", port, dict(os.environ)))
        for index in range(args.rounds):
            log(f"round {index + 1} of {args.rounds}: fitting prompts with llmport's /tokenize")
            prompts = asyncio.run(build_prompts(servers["llmport"].base, sizes, index))
            if index == 0:
                for srv in servers.values():  # Load, allocate.
                    asyncio.run(concurrent(srv.base, [completion(prompts.warmup, 8)]))
            order = list(servers) if index % 2 == 0 else list(reversed(servers))
            for workload in workloads:
                for name in order:
                    settle(servers)
                    found = run_workload(name, servers[name], workload, prompts, sizes)
                    for key, load in found.items():
                        sides[name].setdefault(key, []).append(load)
        state["loaded"] = load_note(servers["llmport"])
    return sides


def swap_latencies(command: list[str], names: tuple[str, str], count: int) -> list[float]:
    """Latency of ``count`` 8-token requests alternating between two models, after one
    untimed request that loads the first."""
    port = int(command[command.index("--port") + 1])
    log(f"swap: starting {' '.join(command)}")
    latencies = []
    with server(command, "/health", port, dict(os.environ)) as srv:
        for i in range(count + 1):
            body = {**sampling(8), "model": names[(i + 1) % 2], "prompt": "Say hello."}
            started = time.perf_counter()
            response = httpx.post(f"{srv.base}/v1/completions", json=body, timeout=600)
            if response.is_error:
                raise RuntimeError(f"swap request: {response.status_code} {response.text[:500]}")
            tokens = response.json()["usage"]["completion_tokens"]
            if tokens != 8:
                raise RuntimeError(f"swap request generated {tokens} tokens, not 8")
            if i:
                latencies.append(time.perf_counter() - started)
            time.sleep(SWAP_GAP_S)
    return latencies


def run_swaps(args: argparse.Namespace, model: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as folder:
        names = ("swap-a", "swap-b")
        for name in names:
            shutil.copyfile(model, Path(folder) / f"{name}.gguf")
        results["llmport"] = swap_latencies(
            llmport_swap_command(args, Path(folder), free_port()), names, args.swaps
        )
        if args.llama_server:
            results["llama-server"] = swap_latencies(
                llama_server_swap_command(args, Path(folder), free_port()), names, args.swaps
            )
    return results


# -- the report -----------------------------------------------------------------------------


def mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.0f} MiB"


def median_of(loads: list[Load], value: Callable[[Load], float]) -> float:
    return statistics.median(value(load) for load in loads)


def print_loads(title: str, rows: dict[str, list[Load]], rss: bool = False) -> None:
    """One line per server: medians over the rounds (TTFT max: the largest; RSS: the first
    round's), then each round's wall time."""
    print(f"\n{title}")
    header = (
        f"{'server':14} {'prompt tok':>10} {'wall':>9} {'TTFT p50':>9} {'TTFT max':>9} {'tok/s':>7}"
    )
    extra = f" {'idle RSS':>9} {'peak RSS':>9} {'CPU s':>7}" if rss else ""
    print(header + extra + "  walls by round")
    for name, loads in rows.items():
        tokens = statistics.mean(t for load in loads for t in load.prompt_tokens)
        line = (
            f"{name:14} {tokens:10.0f} {median_of(loads, lambda r: r.wall):8.2f}s "
            f"{median_of(loads, lambda r: r.ttft_p50):8.2f}s "
            f"{max(max(load.ttfts) for load in loads):8.2f}s "
            f"{median_of(loads, lambda r: r.tokens_per_second):7.1f}"
        )
        if rss:  # The first round's RSS: a fresh server (llama-server's RAM cache grows).
            cpu = median_of(loads, lambda r: r.cpu_seconds or 0.0)
            line += f" {mib(loads[0].idle_rss):>9} {mib(loads[0].peak_rss):>9} {cpu:7.1f}"
        print(line + "  " + ", ".join(f"{load.wall:.1f}" for load in loads))


@dataclass
class Goal:
    label: str
    ours: float
    theirs: float | None
    unit: str
    limit: float
    at_most: bool  # The ratio must be <= limit (else >=).

    def line(self) -> str:
        def show(value: float) -> str:
            if self.unit == "MiB":
                return f"{value / 2**20:.0f} MiB"
            return f"{value:.2f} {self.unit}"

        target = f"{'<=' if self.at_most else '>='} {self.limit:.1f}x"
        if self.theirs is None:
            return f"{self.label:24} {show(self.ours):>11} {'-':>13} {'-':>7} {target:>8}  -"
        ratio = self.ours / self.theirs
        met = ratio <= self.limit if self.at_most else ratio >= self.limit
        return (
            f"{self.label:24} {show(self.ours):>11} {show(self.theirs):>13} {ratio:6.2f}x "
            f"{target:>8}  {'yes' if met else 'NO'}"
        )


def first(values: list[float]) -> float:
    return values[0]


def goals(sides: Sides, swaps: dict[str, list[float]]) -> list[Goal]:
    """Each goal from the medians over the rounds (peak RSS: the first round's)."""
    ours, theirs = sides.get("llmport", {}), sides.get("llama-server", {})
    found: list[Goal] = []

    def add(
        label: str, workload: str, unit: str, limit: float, at_most: bool,
        value: Callable[[Load], float], combine: Callable[[list[float]], float] = statistics.median,
    ) -> None:  # fmt: skip
        if workload in ours:
            mine = combine([value(load) for load in ours[workload]])
            other = None
            if workload in theirs:
                other = combine([value(load) for load in theirs[workload]])
            found.append(Goal(label, mine, other, unit, limit, at_most))

    add("long wall", "long", "s", 1.0, True, lambda r: r.wall)
    # A fresh server's: llama-server keeps prompts in RAM (--cache-ram), so its RSS grows
    # with each round, which would flatter llmport.
    add("long peak RSS (model)", "long", "MiB", 1.0, True, lambda r: r.peak_rss or 0, first)
    add("shared cold TTFT p50", "shared cold", "s", 0.5, True, lambda r: r.ttft_p50)
    add("shared warm TTFT p50", "shared warm", "s", 0.5, True, lambda r: r.ttft_p50)
    add("short tok/s", "short", "tok/s", 1.0, False, lambda r: r.tokens_per_second)
    add("short TTFT p50", "short", "s", 1.0, True, lambda r: r.ttft_p50)
    if "llmport" in swaps:
        other = swaps.get("llama-server")
        found.append(
            Goal(
                "swap p50",
                statistics.median(swaps["llmport"]),
                statistics.median(other) if other else None,
                "s",
                0.6,
                True,
            )
        )
    return found


def report(
    args: argparse.Namespace,
    sizes: Sizes,
    sides: Sides,
    swaps: dict[str, list[float]],
    state: dict[str, Any],
) -> None:
    n = sizes.clients
    print(f"\n{args.rounds} round(s); each figure is the median over the rounds")
    if "long" in args.workloads:
        print_loads(
            f"long: {n} concurrent streams, distinct ~{sizes.long_tokens}-token prompts, "
            f"{sizes.long_out} tokens out; RSS of the process holding the model",
            {name: loads["long"] for name, loads in sides.items() if "long" in loads},
            rss=True,
        )
        if all("long" in sides.get(name, {}) for name in ("llmport", "llama-server")):
            ours, theirs = (
                median_of(sides[name]["long"], lambda r: r.cpu_seconds or 0.0)
                for name in ("llmport", "llama-server")
            )
            print(f"CPU time of the model's process, llmport / llama-server: {ours / theirs:.2f}x "
                  "(the work done; the wall adds waits and a noisy machine)")  # fmt: skip
    for run in ("shared cold", "shared warm"):
        if "shared" in args.workloads:
            print_loads(
                f"{run}: {n} chats at once, one ~{sizes.system_tokens}-token system prompt, "
                f"~{sizes.user_tokens}-token user messages, {sizes.shared_out} tokens out"
                + (" (second run, new user messages)" if run.endswith("warm") else ""),
                {name: loads[run] for name, loads in sides.items() if run in loads},
            )
    if "short" in args.workloads:
        print_loads(
            f"short: {n} concurrent streams, distinct ~{sizes.short_tokens}-token prompts, "
            f"{sizes.short_out} tokens out",
            {name: loads["short"] for name, loads in sides.items() if "short" in loads},
        )
    if swaps:
        print(f"\nswap: two models, room for one, {args.swaps} requests of 8 tokens, alternating")
        for name, latencies in swaps.items():
            print(
                f"{name:14} p50 {statistics.median(latencies):.2f}s "
                f"(min {min(latencies):.2f}s, max {max(latencies):.2f}s)"
            )
    if "loaded" in state:
        print(f"\nllmport --kv-layout {args.kv_layout}: {state['loaded']}")
    print("\nissue 14 goals (ratio = llmport / llama-server)")
    print(f"{'':24} {'llmport':>11} {'llama-server':>13} {'ratio':>7} {'target':>8}  met")
    for goal in goals(sides, swaps):
        print(goal.line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: embedded Gemma 3 270M)")
    parser.add_argument(
        "--llama-server",
        default=os.environ.get("LLMPORT_LLAMA_SERVER"),
        help="llama.cpp's llama-server binary (default: $LLMPORT_LLAMA_SERVER)",
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        type=lambda text: [w.strip() for w in text.split(",") if w.strip()],
        help="comma-separated, of: " + ",".join(WORKLOADS),
    )
    parser.add_argument("--swaps", type=int, default=8, help="timed requests of the swap workload")
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="times each of the long, shared and short workloads runs on each server, in "
        "turn; the figures are medians",
    )  # fmt: skip
    parser.add_argument(
        "--kv-layout", default="auto", choices=("auto", "unified", "per-seq"),
        help="passed to llmport serve",
    )  # fmt: skip
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="shrinks prompt lengths and request counts (e.g. 0.05 for a smoke run)",
    )  # fmt: skip
    args = parser.parse_args()
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if "swap" in args.workloads and args.swaps < 1:
        parser.error("--swaps must be at least 1 with the swap workload")
    model = args.model or embedded_model_path(default_cache_dir())
    sizes = Sizes.scaled(args.scale)
    if not args.llama_server:
        print("note: no llama-server (--llama-server PATH or $LLMPORT_LLAMA_SERVER): "
              "llmport's figures alone, no ratios")  # fmt: skip
    print(f"model {model}, {args.threads} threads, scale {args.scale}")

    state: dict[str, Any] = {}
    sides = run_rounds(args, model, sizes, state)
    swaps = run_swaps(args, model) if "swap" in args.workloads else {}
    report(args, sizes, sides, swaps, state)


if __name__ == "__main__":
    main()
