"""What the HTTP benchmarks (``serve.py``, ``longctx.py``) share: starting and stopping a
server, and one streaming client request."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

GEMMA_EOG_IDS = ("1", "106")  # <eos>, <end_of_turn>: banned so every stream runs to length.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextlib.contextmanager
def server(
    command: list[str], ready_path: str, port: int, env: dict[str, str], ready_seconds: float = 180
) -> Iterator[Server]:
    """Start ``command``, wait until ``ready_path`` answers 200, stop it (SIGINT, then
    SIGKILL) on the way out, and kill whatever of its descendants outlived it."""
    base = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="bench-server-")) / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ready_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} not ready; see {log_path}")
            time.sleep(0.2)
        yield Server(base, process, log_path)
    finally:
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Workers (llmport) and model instances (llama-server's router) are given a
        # moment to follow their parent out; any left are killed by their own pid.
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()


@contextlib.contextmanager
def running(
    command: list[str], ready_path: str, port: int, env: dict[str, str], ready_seconds: float = 180
) -> Iterator[str]:
    """``server`` for callers that need only the base URL."""
    with server(command, ready_path, port, env, ready_seconds) as started:
        yield started.base


@dataclass
class Streamed:
    """One streaming request: time to its first text, text chunks, how it ended, the
    usage the server reported (``stream_options.include_usage``) and its total time."""

    ttft: float
    num_chunks: int
    finish_reason: str | None
    usage: dict[str, Any] | None
    seconds: float


async def stream_request(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Streamed:
    """POST ``body`` (with ``stream`` on) to ``/v1/completions`` or ``/v1/chat/completions``
    and read the event stream; text is ``choices[0].text`` or ``choices[0].delta.content``."""
    started = time.perf_counter()
    ttft, num_chunks, reason, usage = float("nan"), 0, None, None
    async with client.stream("POST", path, json={**body, "stream": True}) as response:
        if response.is_error:
            await response.aread()
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            usage = event.get("usage") or usage
            choices = event.get("choices") or [{}]
            choice = choices[0]
            text = choice.get("text") or (choice.get("delta") or {}).get("content")
            if text:
                if num_chunks == 0:
                    ttft = time.perf_counter() - started
                num_chunks += 1
            reason = choice.get("finish_reason") or reason
    return Streamed(ttft, num_chunks, reason, usage, time.perf_counter() - started)


async def stream_one(
    client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int
) -> tuple[float, int, str | None]:
    """(time to first text, text chunks, finish_reason) of one greedy streaming completion
    that runs to ``max_tokens`` (Gemma's end tokens banned, ``ignore_eos``)."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "logit_bias": dict.fromkeys(GEMMA_EOG_IDS, -100.0),
    }
    result = await stream_request(client, "/v1/completions", body)
    return result.ttft, result.num_chunks, result.finish_reason


@dataclass
class RunResult:
    """One timed batch of concurrent streams: its wall time, each stream's TTFT, and the
    output tokens it produced."""

    seconds: float
    ttfts: list[float]
    num_tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.seconds

    @property
    def ttft_p50(self) -> float:
        return statistics.median(self.ttfts)
