"""How ``llmport serve`` ends: SIGTERM drains, and no worker outlives its server."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from server_helpers import running_server


def _wait_gone(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=within)
    return alive


def test_sigterm_lets_short_requests_finish_ends_long_ones_cleanly_and_leaves_no_worker(
    tmp_path: Path, tiny_model_path: Path, gemma_model_path: Path
) -> None:
    # Two workers stream at once: one thread each, so that llama.cpp's spinning threads do
    # not outnumber a 2-core machine's cores (oversubscribed, 300 tiny tokens took > 10 s).
    args = ("--shutdown-timeout", "10", "--num-threads", "1")
    with running_server(tmp_path, str(tiny_model_path), *args) as server:
        workers = server.workers()
        assert workers
        events: list[str] = []
        short: list[str] = []

        def stream(model: Path, max_tokens: int, into: list[str]) -> None:
            body = {"model": str(model), "prompt": "hi", "max_tokens": max_tokens,
                    "ignore_eos": True, "stream": True}  # fmt: skip
            with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body,
                              timeout=60) as response:  # fmt: skip
                into.extend(line for line in response.iter_lines() if line)

        # Gemma cannot write 4,000 tokens in the grace period on any CPU; the tiny model
        # writes 300 well within it.
        streaming = threading.Thread(target=stream, args=(gemma_model_path, 4000, events))
        quick = threading.Thread(target=stream, args=(tiny_model_path, 300, short))
        streaming.start()
        quick.start()
        deadline = time.monotonic() + 60
        while not (events and short):  # Both are answering.
            assert time.monotonic() < deadline, "the requests never started"
            time.sleep(0.01)
        workers = server.workers()  # Gemma's too
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        streaming.join(timeout=40)
        quick.join(timeout=40)
        took = time.monotonic() - started
        # uvicorn re-raises the signal once it has shut down, as a signalled process should.
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        # In flight when the signal came and short enough for the grace period: finished.
        assert short[-1] == "data: [DONE]" and '"length"' in short[-2], short[-2:]
        assert events[-1] == "data: [DONE]"
        last = json.loads(events[-2].removeprefix("data: "))
        assert last["error"]["code"] == "server_shutting_down", last
        assert 9.5 < took < 25, took  # The grace period, then the end.
        assert not _wait_gone(workers, 5), "a worker outlived the server"
        with pytest.raises(httpx.ConnectError):  # Nothing listens any more.
            httpx.get(f"{server.base_url}/health", timeout=2)


def test_a_killed_server_leaves_no_worker_behind(tmp_path: Path, tiny_model_path: Path) -> None:
    with running_server(tmp_path, str(tiny_model_path)) as server:
        workers = server.workers()
        assert len(workers) >= 2  # The model's worker and the warm spare.
        server.process.kill()
        server.process.wait()
        alive = _wait_gone(workers, 10)
        for process in alive:
            process.kill()
        assert not alive, f"workers outlived a killed server: {alive}"
