"""The README's first command, as a new user runs it: a runtime-only install (no dev
extra) that answers with the embedded model, from ``llmport run`` and ``llmport serve``.

The dev environment these tests run in has every dev tool installed, so a runtime
import that only the dev extra satisfies would pass every other test; this one builds
a second, clean virtual environment with ``scripts/install.sh`` (reusing the cached
llama.cpp wheel, so it costs the pip install only) and fails on such an import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, llmport
names = [m.name for m in pkgutil.walk_packages(llmport.__path__, "llmport.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    env = {**_clean_env(), "LLMPORT_VENV": str(venv)}
    result = subprocess.run(
        [str(ROOT / "scripts" / "install.sh")],
        env=env, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def _clean_env() -> dict[str, str]:
    """This process's environment without the dev venv on PATH or in VIRTUAL_ENV."""
    dev_bin = str(ROOT / ".venv" / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p != dev_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join(path)}


@pytest.fixture
def user_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh store, a free port, no network; stops a server ``run`` started."""
    home = tmp_path / "home"
    env = {
        **_clean_env(),
        "LLMPORT_HOME": str(home),
        "LLMPORT_HOST": f"127.0.0.1:{free_port()}",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    yield env
    pid_file = home / "server.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGINT)


def test_the_runtime_install_imports_every_module_and_has_help(
    runtime_venv: Path, user_env: dict[str, str]
) -> None:
    python, llmport = runtime_venv / "bin" / "python", runtime_venv / "bin" / "llmport"
    dev = subprocess.run([str(python), "-c", "import pytest"], capture_output=True, check=False)
    assert dev.returncode != 0, "the runtime install must not carry the dev extra"
    imported = subprocess.run(
        [str(python), "-c", IMPORT_EVERY_MODULE], env=user_env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) > 40
    for args in (["--help"], ["serve", "--help"], ["run", "--help"]):
        result = subprocess.run([str(llmport), *args], env=user_env, capture_output=True,
                                text=True, check=False)  # fmt: skip
        assert result.returncode == 0 and "Usage" in result.stdout, (args, result.stderr)


def test_the_readme_first_command_answers(runtime_venv: Path, user_env: dict[str, str]) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [str(runtime_venv / "bin" / "llmport"), "run", "gemma3:270m", "The capital of France is"],
        env=user_env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) >= 3, result.stdout  # An answer came back.
    assert "base model" in result.stderr  # Gemma 3 270M has no chat template.
    print(f"first run (server start, assemble, load, answer): {time.monotonic() - started:.1f}s")


def test_the_runtime_install_serves_both_dialects(
    runtime_venv: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(runtime_venv / "bin" / "llmport"), "serve", "--port", str(port)],
            env=user_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, process, log_path)
        message = [{"role": "user", "content": "Hello"}]
        with httpx.Client(base_url=base, timeout=300) as http:
            openai_style = http.post("/v1/chat/completions", json={
                "model": "gemma3:270m", "messages": message, "max_tokens": 4,
            })  # fmt: skip
            assert openai_style.status_code == 200, openai_style.text
            assert openai_style.json()["choices"][0]["message"]["role"] == "assistant"
            ollama_style = http.post("/api/chat", json={
                "model": "gemma3:270m", "messages": message, "stream": False,
                "options": {"num_predict": 4},
            })  # fmt: skip
            assert ollama_style.status_code == 200, ollama_style.text
            assert ollama_style.json()["done"] is True
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _wait_up(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text(errors="replace")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"server not up:\n{log_path.read_text(errors='replace')}")
