"""The CLI's HTTP client of ``llmport serve`` (Ollama's API), as Ollama's CLI is.

``LLMPORT_HOST`` says where the server is (``127.0.0.1:11434`` by default, Ollama's
port; ``host``, ``host:port``, ``:port`` or a URL), ``LLMPORT_API_KEY`` the key if
it needs one. ``ensure_server`` starts one in the background when none answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from llmport.store.embedded import default_cache_dir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434
START_TIMEOUT_SECONDS = 60.0


class CliError(Exception):
    """A one-line reason the command failed (printed as ``error: ...``, exit 1)."""


def server_address() -> tuple[str, int]:
    """(host, port) from ``LLMPORT_HOST``."""
    text = os.environ.get("LLMPORT_HOST", "").strip()
    if not text:
        return DEFAULT_HOST, DEFAULT_PORT
    parsed = urlsplit(text if "://" in text else f"http://{text}")
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError:
        raise CliError(f"LLMPORT_HOST={text!r} has a bad port") from None
    return parsed.hostname or DEFAULT_HOST, port


def base_url() -> str:
    host, port = server_address()
    return f"http://{host}:{port}"


class Client:
    def __init__(self, timeout: float | None = None) -> None:
        key = os.environ.get("LLMPORT_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base_url(), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def is_up(self) -> bool:
        try:
            return self.http.get("/api/version", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.ConnectError:
            raise CliError(f"could not connect to llmport at {base_url()}: is it running "
                           "(llmport serve)?") from None  # fmt: skip
        except httpx.HTTPError as error:
            raise CliError(f"request to {base_url()}{path} failed: {error}") from None
        _raise_for_error(response)
        return response.json() if response.content else None

    def stream(self, path: str, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """NDJSON objects as the server sends them; an ``error`` line raises."""
        try:
            with self.http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_error(response)
                for line in response.iter_lines():
                    if line.strip():
                        item: dict[str, Any] = json.loads(line)
                        if "error" in item:
                            raise CliError(str(item["error"]))
                        yield item
        except httpx.ConnectError:
            raise CliError(f"could not connect to llmport at {base_url()}") from None
        except httpx.HTTPError as error:
            raise CliError(f"the stream from {base_url()}{path} broke: {error}") from None


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    message = error.get("message") if isinstance(error, dict) else error
    raise CliError(str(message or f"HTTP {response.status_code}"))


def ensure_server(client: Client) -> None:
    """Start ``llmport serve`` in the background unless one answers (as ``ollama run``)."""
    if client.is_up():
        return
    host, port = server_address()
    home = default_cache_dir()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmport.cli.main",
                "serve",
                "--host",
                host,
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (home / "server.pid").write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not client.is_up():
        if process.poll() is not None:
            raise CliError(f"the background server exited ({_last_line(log_path)})")
        if time.monotonic() > deadline:
            raise CliError(f"the background server did not answer in time; see {log_path}")
        time.sleep(0.1)


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else f"see {path}"
