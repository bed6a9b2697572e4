"""Start ``llmport serve`` as a user does (a subprocess on 127.0.0.1) and talk to it;
serve plain files over HTTP beside it (what a server may be asked to fetch)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    clients: list[openai.OpenAI] = field(default_factory=list)

    def openai(self, api_key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        """An OpenAI client closed with the server (no socket left for the GC)."""
        client = openai.OpenAI(base_url=self.openai_url, api_key=api_key, **kwargs)
        self.clients.append(client)
        return client

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    def workers(self) -> list[psutil.Process]:
        """The engine worker processes (spare included)."""
        return psutil.Process(self.process.pid).children(recursive=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[Server]:
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    environ = {**os.environ, "LLMPORT_HOME": str(tmp_path / "home"), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmport.cli.main", "serve", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_healthy(server, timeout)
        yield server
    finally:
        for client in server.clients:
            client.close()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited {server.process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def serving_files(folder: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving ``folder``'s files; yields HOST:PORT."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
