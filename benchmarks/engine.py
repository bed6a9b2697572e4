"""Engine throughput and worker memory, against the peers that bound them.

For each concurrency N it times N distinct prompts, ``--max-tokens`` greedy tokens each with
every end-of-generation token banned, three ways, and prints aggregate output tokens/s:

- llmport: ``EngineCore(LlamaCppBackend)`` in this process, stepped to completion;
- raw: a batched ``llama_decode`` loop written here against llama.cpp's C API, with the
  same context (cells, batch, sequence ids, unified KV, flash attention, threads), one
  decode token per sequence per step and a numpy argmax over the output rows;
- serial: ``llama_cpp.Llama.create_completion`` on one prompt after another.

Each time runs from the first request added to the last token out, prefill included. Then
it splits llmport's step at N=16 into decode, sampling and the rest, and compares the peak
RSS (VmHWM) of the llmport worker with ``llama-server -c 65536 --parallel 16`` while each
serves 16 sequences of about 4,096 tokens. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import llama_cpp as llama
import numpy as np

import llmport.engines.batching.core
from llmport.config import EngineConfig
from llmport.engine.protocol import EngineClient
from llmport.engine.registry import LoadTarget, MemoryEstimate
from llmport.engines.batching.core import EngineCore
from llmport.engines.llama_cpp.backend import LlamaCppBackend
from llmport.runtime.base import LOCAL_NODE
from llmport.runtime.local import LocalRuntime
from llmport.store.embedded import default_cache_dir, embedded_model_path
from llmport.types import Request, SamplingParams

logger = logging.getLogger("benchmarks.engine")

TOPICS = (
    "Lighthouses", "Volcanoes", "Honeybees", "Glaciers", "Submarines", "Violins", "Comets",
    "Bridges", "Octopuses", "Deserts", "Windmills", "Telescopes", "Coral reefs", "Bicycles",
    "Thunderstorms", "Libraries", "Penguins", "Railways", "Mushrooms", "Satellites",
    "Pyramids", "Hummingbirds", "Earthquakes", "Printing presses", "Rainforests", "Owls",
    "Tides", "Clocks", "Salmon", "Canals", "Auroras", "Beavers", "Typewriters", "Caves",
    "Kites", "Whales", "Compasses", "Orchards", "Hot-air balloons", "Fireflies",
)  # fmt: skip
PROMPT = (
    "{topic}: explain to a curious twelve-year-old how they work, why they matter to people, "
    "and one surprising fact that most adults do not know."
)
#: The llama-server run the issue names as the memory bound.
SERVER_NUM_CTX = 65536
SERVER_NUM_SLOTS = 16
RSS_MAX_MODEL_LEN = 4096


# -- workload --------------------------------------------------------------------------


def short_prompts(num_prompts: int) -> list[str]:
    """Distinct prompts of 25-35 tokens that differ from their first word on."""
    prompts = []
    for i in range(num_prompts):
        topic = TOPICS[i % len(TOPICS)]
        if i >= len(TOPICS):
            topic = f"{topic} ({i // len(TOPICS) + 1})"
        prompts.append(PROMPT.format(topic=topic))
    return prompts


def long_prompt_ids(model_path: Path, num_prompts: int, num_tokens: int) -> list[list[int]]:
    """Distinct token-id prompts of exactly ``num_tokens`` (BOS included), seeded."""
    vocab = llama.Llama(str(model_path), vocab_only=True, verbose=False)
    words = " ".join(PROMPT.format(topic="x").split()[1:]).split() + [t.lower() for t in TOPICS]
    prompts = []
    for i in range(num_prompts):
        rng = random.Random(i)
        text = f"{TOPICS[i % len(TOPICS)]} {i}: " + " ".join(
            rng.choice(words) for _ in range(num_tokens)
        )
        ids = vocab.tokenize(text.encode(), add_bos=True)
        prompts.append(ids[:num_tokens])
    vocab.close()
    return prompts


def greedy_params(max_tokens: int, banned_ids: frozenset[int]) -> SamplingParams:
    """Greedy, running to length: end-of-generation tokens do not stop a sequence, and
    ``banned_ids`` (the EOG tokens, unless ``--eos ignore``) are never picked."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0,
        ignore_eos=True,
        logit_bias={t: float("-inf") for t in sorted(banned_ids)},
    )


def banned_ids(eos_mode: str, eog_token_ids: frozenset[int]) -> frozenset[int]:
    return eog_token_ids if eos_mode == "ban" else frozenset()


# -- llmport -----------------------------------------------------------------------------


def engine_config(num_seqs: int, max_tokens: int, num_threads: int) -> EngineConfig:
    # Room for every prompt and output at once, so nothing is preempted.
    num_kv_tokens = max(1024, num_seqs * (64 + max_tokens))
    return EngineConfig(
        max_num_seqs=num_seqs,
        max_num_kv_tokens=num_kv_tokens,
        max_num_batched_tokens=512,
        num_threads=num_threads,
    )


def run_llmport(core: EngineCore, prompts: list[str], params: SamplingParams) -> float:
    """Seconds from the first add to the last token; every sequence must run to length."""
    core.reset_prefix_cache()  # a repeat must prefill again, as the raw loop does
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):
        core.add_request(Request(request_id=str(i), prompt=prompt, params=params))
    num_tokens = 0
    while core.has_unfinished_requests:
        num_tokens += sum(len(out.token_ids) for out in core.step())
    elapsed = time.perf_counter() - start
    _check_count("llmport", num_tokens, len(prompts) * (params.max_tokens or 0))
    return elapsed


def _check_count(name: str, num_tokens: int, expected: int) -> None:
    if num_tokens != expected:
        raise RuntimeError(f"{name} generated {num_tokens} tokens, expected {expected}")


@dataclass
class StepProfile:
    """Seconds spent over the steps of one run, by part."""

    num_steps: int = 0
    step: float = 0.0
    decode: float = 0.0
    sample: float = 0.0

    @property
    def other(self) -> float:
        return self.step - self.decode - self.sample


class _TimedBackend:
    """Delegates to a LlamaCppBackend, adding the time ``decode`` takes to a profile."""

    def __init__(self, backend: LlamaCppBackend) -> None:
        self._backend = backend
        self.profile = StepProfile()

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)

    def decode(self, batch: object) -> object:
        start = time.perf_counter()
        logits = self._backend.decode(batch)  # type: ignore[arg-type]
        self.profile.decode += time.perf_counter() - start
        return logits


def profile_llmport(model_path: Path, num_seqs: int, args: argparse.Namespace) -> StepProfile:
    """One warm run with ``step``, ``backend.decode`` and the engine's ``sample`` timed."""
    config = engine_config(num_seqs, args.max_tokens, args.threads)
    backend = _TimedBackend(LlamaCppBackend(model_path, config))
    core = EngineCore(backend, config)  # type: ignore[arg-type]
    prompts = short_prompts(num_seqs)
    banned = banned_ids(args.eos, backend.eog_token_ids)  # type: ignore[arg-type]
    params = greedy_params(args.max_tokens, banned)
    run_llmport(core, prompts, params)  # warm-up
    profile = backend.profile = StepProfile()
    sample = llmport.engines.batching.core.sample

    def timed_sample(*args: object) -> list[int]:
        start = time.perf_counter()
        token_ids = sample(*args)  # type: ignore[arg-type]
        profile.sample += time.perf_counter() - start
        return token_ids

    core.reset_prefix_cache()
    with mock.patch.object(llmport.engines.batching.core, "sample", timed_sample):
        for i, prompt in enumerate(prompts):
            core.add_request(Request(request_id=str(i), prompt=prompt, params=params))
        while core.has_unfinished_requests:
            start = time.perf_counter()
            core.step()
            profile.step += time.perf_counter() - start
            profile.num_steps += 1
    core.close()
    return profile


# -- raw llama.cpp -------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextShape:
    """What a llama.cpp context is made of; read back from llmport's backend."""

    num_kv_tokens: int
    batch_size: int
    num_slots: int
    num_threads: int


class RawLoop:
    """A batched greedy decode loop straight on llama.cpp's C API: the bar to meet."""

    def __init__(self, model_path: Path, shape: ContextShape, banned_ids: frozenset[int]):
        params = llama.llama_model_default_params()
        self._model = llama.llama_model_load_from_file(str(model_path).encode(), params)
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._vocab_size = int(llama.llama_vocab_n_tokens(self._vocab))
        self._ctx = llama.llama_init_from_model(self._model, _context_params(shape))
        self._memory = llama.llama_get_memory(self._ctx)
        self._batch_size = shape.batch_size
        self._batch = llama.llama_batch_init(shape.batch_size, 0, 1)
        self._tokens = np.ctypeslib.as_array(self._batch.token, shape=(shape.batch_size,))
        self._positions = np.ctypeslib.as_array(self._batch.pos, shape=(shape.batch_size,))
        self._outputs = np.ctypeslib.as_array(self._batch.logits, shape=(shape.batch_size,))
        self._banned_ids = np.array(sorted(banned_ids), dtype=np.int64)
        self.profile = StepProfile()

    def run(self, prompts: list[str], max_tokens: int) -> float:
        """Seconds to tokenize, prefill and decode ``max_tokens`` tokens per prompt."""
        llama.llama_memory_clear(self._memory, True)
        self.profile = StepProfile()
        start = time.perf_counter()
        prompt_ids = [self._tokenize(p) for p in prompts]
        last_ids = self._prefill(prompt_ids)
        num_tokens = len(prompts)
        self._set_decode_rows(len(prompts))
        positions = np.array([len(ids) for ids in prompt_ids], dtype=np.int32)
        for _ in range(max_tokens - 1):
            last_ids = self._decode_step(last_ids, positions)
            positions += 1
            num_tokens += len(prompts)
        elapsed = time.perf_counter() - start
        _check_count("raw loop", num_tokens, len(prompts) * max_tokens)
        return elapsed

    def _tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buffer = (llama.llama_token * (len(data) + 8))()
        count = llama.llama_tokenize(self._vocab, data, len(data), buffer, len(buffer), True, True)
        return list(buffer[:count])

    def _prefill(self, prompt_ids: list[list[int]]) -> np.ndarray:
        """Feed all prompts in chunks of ``batch_size``; return each one's first new token."""
        flat = [(seq, pos, t) for seq, ids in enumerate(prompt_ids) for pos, t in enumerate(ids)]
        ends = np.cumsum([len(ids) for ids in prompt_ids]) - 1
        is_output = np.zeros(len(flat), dtype=np.int8)
        is_output[ends] = 1
        first_ids = []
        for begin in range(0, len(flat), self._batch_size):
            chunk = flat[begin : begin + self._batch_size]
            for row, (seq, pos, token_id) in enumerate(chunk):
                self._tokens[row] = token_id
                self._positions[row] = pos
                self._batch.n_seq_id[row] = 1
                self._batch.seq_id[row][0] = seq
            self._outputs[: len(chunk)] = is_output[begin : begin + len(chunk)]
            num_outputs = int(is_output[begin : begin + len(chunk)].sum())
            first_ids.append(self._forward(len(chunk), num_outputs))
        return np.concatenate(first_ids)

    def _set_decode_rows(self, num_seqs: int) -> None:
        """Decode batches are row i = sequence i, all outputs: set once, not per step."""
        for row in range(num_seqs):
            self._batch.n_seq_id[row] = 1
            self._batch.seq_id[row][0] = row
        self._outputs[:num_seqs] = 1

    def _decode_step(self, last_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        num_seqs = len(last_ids)
        self._tokens[:num_seqs] = last_ids
        self._positions[:num_seqs] = positions
        return self._forward(num_seqs, num_seqs)

    def _forward(self, num_tokens: int, num_outputs: int) -> np.ndarray:
        start = time.perf_counter()
        self._batch.n_tokens = num_tokens
        if llama.llama_decode(self._ctx, self._batch) != 0:
            raise RuntimeError("llama_decode failed in the raw loop")
        decoded = time.perf_counter()
        logits = np.ctypeslib.as_array(
            llama.llama_get_logits(self._ctx), shape=(num_outputs, self._vocab_size)
        )
        logits[:, self._banned_ids] = -np.inf
        token_ids = np.argmax(logits, axis=1).astype(np.int32)
        self.profile.decode += decoded - start
        self.profile.sample += time.perf_counter() - decoded
        self.profile.step += time.perf_counter() - start
        self.profile.num_steps += 1
        return token_ids

    def close(self) -> None:
        llama.llama_batch_free(self._batch)
        llama.llama_free(self._ctx)
        llama.llama_model_free(self._model)


def _context_params(shape: ContextShape) -> llama.llama_context_params:
    """The context llmport's backend makes, field for field."""
    params = llama.llama_context_default_params()
    params.n_ctx = shape.num_kv_tokens
    params.n_batch = params.n_ubatch = shape.batch_size
    params.n_seq_max = shape.num_slots
    params.n_outputs_max = shape.num_slots
    params.n_threads = params.n_threads_batch = shape.num_threads
    params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_AUTO
    params.kv_unified = True
    params.swa_full = False
    params.no_perf = True
    return params


# -- serial llama-cpp-python ------------------------------------------------------------------


def run_serial(
    model: llama.Llama, prompts: list[str], max_tokens: int, eog_token_ids: frozenset[int]
) -> float:
    bias = {t: float("-inf") for t in eog_token_ids}
    start = time.perf_counter()
    num_tokens = 0
    for prompt in prompts:
        result = model.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, logit_bias=bias
        )
        num_tokens += result["usage"]["completion_tokens"]  # type: ignore[index]
    elapsed = time.perf_counter() - start
    _check_count("serial", num_tokens, len(prompts) * max_tokens)
    return elapsed


def load_serial(model_path: Path, num_threads: int) -> llama.Llama:
    # Flash attention on: what the engines' "auto" resolves to on a CPU.
    return llama.Llama(
        str(model_path),
        n_ctx=512,
        n_batch=512,
        n_threads=num_threads,
        n_threads_batch=num_threads,
        flash_attn=True,
        verbose=False,
    )


# -- throughput table --------------------------------------------------------------------------


@dataclass
class Row:
    num_seqs: int
    llmport: float
    raw: float
    serial: float | None
    raw_profile: StepProfile = field(default_factory=StepProfile)


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def measure_row(
    model_path: Path, num_seqs: int, args: argparse.Namespace, serial: llama.Llama | None
) -> Row:
    prompts = short_prompts(num_seqs)
    config = engine_config(num_seqs, args.max_tokens, args.threads)
    core = EngineCore(LlamaCppBackend(model_path, config), config)
    backend = core.backend
    eog_token_ids = backend.eog_token_ids
    banned = banned_ids(args.eos, eog_token_ids)
    params = greedy_params(args.max_tokens, banned)
    shape = ContextShape(
        backend.num_kv_tokens, backend.max_num_batched_tokens, backend.num_slots, args.threads
    )
    raw = RawLoop(model_path, shape, banned)
    warm = greedy_params(min(8, args.max_tokens), banned)
    run_llmport(core, prompts, warm)
    raw.run(prompts, warm.max_tokens or 0)
    llmport_times, raw_times = [], []
    for _ in range(args.repeats):  # interleaved, so a noisy spell hits both
        llmport_times.append(run_llmport(core, prompts, params))
        raw_times.append(raw.run(prompts, args.max_tokens))
    row = Row(num_seqs, min(llmport_times), min(raw_times), None, raw.profile)
    core.close()
    raw.close()
    if serial is not None:
        row.serial = best_of(
            args.repeats, lambda: run_serial(serial, prompts, args.max_tokens, eog_token_ids)
        )
    return row


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    num_out = args.max_tokens
    print(
        f"\nGemma 3 270M Q4_K_M, {num_out} generated tokens per sequence, greedy, "
        f"EOS {'banned' if args.eos == 'ban' else 'ignored'}, {args.threads} threads, "
        f"best of {args.repeats}; aggregate output tokens/s"
    )
    header = (
        f"{'N':>4} | {'llmport tok/s':>13} | {'raw tok/s':>10} | {'serial tok/s':>12} | "
        f"{'llmport/raw':>11} | {'llmport/serial':>14}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        llmport_rate = _rate(row.num_seqs, num_out, row.llmport)
        raw_rate = _rate(row.num_seqs, num_out, row.raw)
        serial_rate = _rate(row.num_seqs, num_out, row.serial) if row.serial else None
        serial_text = f"{serial_rate:12.1f}" if serial_rate else f"{'-':>12}"
        ratio_text = f"{llmport_rate / serial_rate:13.2f}x" if serial_rate else f"{'-':>14}"
        flag = "" if llmport_rate >= 0.9 * raw_rate else "  < 0.9x raw"
        print(
            f"{row.num_seqs:>4} | {llmport_rate:13.1f} | {raw_rate:10.1f} | {serial_text} | "
            f"{llmport_rate / raw_rate:10.2f}x | {ratio_text}{flag}"
        )


def _rate(num_seqs: int, num_out: int, seconds: float) -> float:
    return num_seqs * num_out / seconds


def print_profile(name: str, profile: StepProfile) -> None:
    steps = max(1, profile.num_steps)
    total = profile.step or 1.0
    print(
        f"  {name:<8} {profile.num_steps:3d} steps, {1000 * profile.step / steps:6.2f} ms/step: "
        f"decode {100 * profile.decode / total:5.1f}% ({1000 * profile.decode / steps:.2f} ms), "
        f"sampling {100 * profile.sample / total:5.1f}% ({1000 * profile.sample / steps:.2f} ms), "
        f"other {100 * profile.other / total:5.1f}% ({1000 * profile.other / steps:.2f} ms)"
    )


# -- peak RSS ------------------------------------------------------------------------------------


def read_status_kib(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` memory line (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


async def llmport_rss(
    model_path: Path, prompts: list[list[int]], max_tokens: int, num_threads: int
) -> tuple[int, int]:
    """(RSS after load, peak RSS) of a worker that serves all prompts at once, in KiB."""
    config = EngineConfig(
        max_num_seqs=len(prompts),
        max_num_kv_tokens=SERVER_NUM_CTX,
        max_model_len=RSS_MAX_MODEL_LEN,
        num_threads=num_threads,
    )
    target = LoadTarget(weight_files=[str(model_path)])
    runtime = LocalRuntime(warm_spare=False)
    client = await runtime.start(
        "llama_cpp", target, config, MemoryEstimate(0, 0, 0, 0), LOCAL_NODE
    )
    pid = client.pid
    assert pid is not None  # started
    try:
        loaded = read_status_kib(pid, "VmRSS")
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        counts = await asyncio.gather(*(_generate(client, ids, params) for ids in prompts))
        _check_count("llmport worker", sum(counts), len(prompts) * max_tokens)
        return loaded, read_status_kib(pid, "VmHWM")
    finally:
        await client.close()


async def _generate(client: EngineClient, prompt_ids: list[int], params: SamplingParams) -> int:
    request = Request(request_id="", prompt_token_ids=prompt_ids, params=params)
    return sum([len(out.token_ids) async for out in client.generate(request)])


def server_rss(
    server: Path, model_path: Path, prompts: list[list[int]], max_tokens: int, num_threads: int
) -> tuple[int, int]:
    """(RSS after load, peak RSS) of llama-server serving all prompts at once, in KiB."""
    port = _free_port()
    command = [str(server), "-m", str(model_path), "-c", str(SERVER_NUM_CTX)]
    command += ["--parallel", str(SERVER_NUM_SLOTS), "--port", str(port), "--host", "127.0.0.1"]
    command += ["--threads", str(num_threads), "--threads-batch", str(num_threads)]
    with _running(command) as process:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process)
        loaded = read_status_kib(process.pid, "VmRSS")
        with ThreadPoolExecutor(len(prompts)) as pool:
            counts = list(pool.map(lambda ids: _complete(url, ids, max_tokens), prompts))
        _check_count("llama-server", sum(counts), len(prompts) * max_tokens)
        return loaded, read_status_kib(process.pid, "VmHWM")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _running(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"llama-server did not become healthy in {timeout:.0f} s")


def _complete(url: str, prompt_ids: list[int], max_tokens: int) -> int:
    body = {"prompt": prompt_ids, "n_predict": max_tokens, "temperature": 0, "ignore_eos": True}
    request = urllib.request.Request(
        f"{url}/completion",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=3600) as response:
        result = json.load(response)
    num_tokens: int = result["tokens_predicted"]
    return num_tokens


def print_rss(args: argparse.Namespace, model_path: Path) -> None:
    prompts = long_prompt_ids(model_path, SERVER_NUM_SLOTS, args.rss_prompt_tokens)
    total = args.rss_prompt_tokens + args.rss_max_tokens
    print(
        f"\nPeak RSS (VmHWM), {SERVER_NUM_SLOTS} concurrent sequences of {total} tokens "
        f"({args.rss_prompt_tokens} prompt + {args.rss_max_tokens} generated), "
        f"{SERVER_NUM_CTX} KV cells"
    )
    start = time.perf_counter()
    loaded, peak = asyncio.run(llmport_rss(model_path, prompts, args.rss_max_tokens, args.threads))
    _print_rss_line("llmport worker", loaded, peak, time.perf_counter() - start)
    server = args.llama_server
    if server is None or not server.is_file():
        print(f"  llama-server: skipped (no binary at {server}; pass --llama-server PATH)")
        return
    start = time.perf_counter()
    server_loaded, server_peak = server_rss(
        server, model_path, prompts, args.rss_max_tokens, args.threads
    )
    _print_rss_line(
        f"llama-server -c {SERVER_NUM_CTX} --parallel {SERVER_NUM_SLOTS}",
        server_loaded,
        server_peak,
        time.perf_counter() - start,
    )
    verdict = "meets" if peak <= server_peak else "misses"
    print(f"  llmport / llama-server peak: {peak / server_peak:.2f}x ({verdict} the target <= 1)")


def _print_rss_line(name: str, loaded_kib: int, peak_kib: int, seconds: float) -> None:
    print(
        f"  {name:<40} peak {peak_kib / 1024:7.1f} MiB  (after load {loaded_kib / 1024:6.1f} MiB; "
        f"run {seconds:.0f} s)"
    )


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded Gemma)")
    parser.add_argument("--concurrency", default="1,4,8,16,32", help="comma-separated N")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--repeats", type=int, default=3, help="take the best of R runs")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="llama.cpp threads"
    )
    parser.add_argument(
        "--eos",
        choices=["ban", "ignore"],
        default="ban",
        help="ban: EOG tokens get logit_bias -inf (the issue's setting); ignore: plain greedy "
        "with ignore_eos, EOG tokens may be picked but do not stop (serial always bans)",
    )
    parser.add_argument("--skip-serial", action="store_true", help="skip create_completion")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak RSS comparison")
    parser.add_argument("--skip-profile", action="store_true", help="skip the step split")
    parser.add_argument(
        "--llama-server",
        type=Path,
        default=os.environ.get("LLMPORT_LLAMA_SERVER"),
        help="llama.cpp's llama-server binary (default: $LLMPORT_LLAMA_SERVER)",
    )
    parser.add_argument("--rss-prompt-tokens", type=int, default=4000)
    parser.add_argument("--rss-max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    if args.rss_prompt_tokens + args.rss_max_tokens > RSS_MAX_MODEL_LEN:
        parser.error(f"--rss-prompt-tokens + --rss-max-tokens must be <= {RSS_MAX_MODEL_LEN}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # WARNING at the root keeps llama.cpp's chatter (routed into logging) quiet, here and in
    # the worker, which takes the root level; progress lines still show.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    model_path = args.model or embedded_model_path(default_cache_dir())
    serial = None if args.skip_serial else load_serial(model_path, args.threads)
    rows = []
    for num_seqs in args.concurrency:
        logger.info("N=%d ...", num_seqs)
        rows.append(measure_row(model_path, num_seqs, args, serial))
    if serial is not None:
        serial.close()
    print_table(rows, args)
    profiled = [row for row in rows if row.num_seqs == 16] or rows[-1:]
    if not args.skip_profile and profiled:
        row = profiled[0]
        logger.info("profiling llmport's step at N=%d ...", row.num_seqs)
        profile = profile_llmport(model_path, row.num_seqs, args)
        print(f"\nWhere a step's time goes at N={row.num_seqs} (one run, prefill steps included)")
        print_profile("llmport", profile)
        print_profile("raw", row.raw_profile)
    if not args.skip_rss:
        logger.info("peak RSS ...")
        print_rss(args, model_path)


if __name__ == "__main__":
    main()
