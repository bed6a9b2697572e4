"""The command line, run as a user runs it (subprocesses), against a real server."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fake_hub import FakeHub
from server_helpers import free_port
from tiny_model import write_tiny_model

REPO = "tester/tiny-GGUF"
VERBS = ["serve", "run", "pull", "list", "ls", "show", "rm", "cp", "create", "ps", "stop"]


def llmport(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmport.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh store and a free port; stops the server ``run`` starts in the background."""
    home = tmp_path / "home"
    env = {"LLMPORT_HOME": str(home), "LLMPORT_HOST": f"127.0.0.1:{free_port()}"}
    yield env
    pid_file = home / "server.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGINT)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)


def test_run_starts_a_server_and_answers_a_one_shot_prompt(
    cli_env: dict[str, str], tiny_model_path: Path
) -> None:
    result = llmport("run", str(tiny_model_path), "hello", "--max-tokens", "5", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and len(result.stdout) > 1
    again = llmport("run", str(tiny_model_path), "--max-tokens", "3", stdin="hi", env=cli_env)
    assert again.returncode == 0, again.stderr  # The same background server answers.
    assert (Path(cli_env["LLMPORT_HOME"]) / "server.pid").exists()


@pytest.mark.slow
def test_run_on_a_fresh_store_answers_with_the_embedded_model(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "HF_HUB_OFFLINE": "1"}
    result = llmport("run", "The capital of France is", "--max-tokens", "8", env=env)
    assert result.returncode != 0  # One argument is the model name: no such model...
    result = llmport("run", "gemma3:270m", "The capital of France is", "--max-tokens", "8",
                     "--temperature", "0", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "France" in result.stdout or "Paris" in result.stdout  # A real answer.


def test_interactive_chat_with_multiline_set_and_bye(
    cli_env: dict[str, str], tiny_model_path: Path
) -> None:
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmport.cli.main", "run", str(tiny_model_path)],
        stdin=child,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **cli_env},
    )
    os.close(child)
    script = '/set parameter num_predict 4\nhello\n"""first line\nsecond line"""\n/bye\n'
    os.write(main, script.encode())
    out, err = process.communicate(timeout=120)
    os.close(main)
    assert process.returncode == 0, err
    assert b"Set parameter 'num_predict' to '4'" in err
    assert out.count(b"\n\n") >= 2  # Two answers, each followed by a blank line.


@pytest.mark.slow
def test_interactive_base_model_session_stops_on_ctrl_c(cli_env: dict[str, str]) -> None:
    """The embedded Gemma is a base model: run says so, answers end by themselves, and
    Ctrl-C (typed at the terminal) stops an answer, aborting it in the engine."""
    env = {**os.environ, **cli_env, "HF_HUB_OFFLINE": "1"}
    session = _TerminalSession(["run", "gemma3:270m"], env)
    try:
        session.expect(b">>> ")
        assert b"base model" in session.seen
        session.type(b"/set parameter temperature 0\n")
        session.expect(b">>> ")
        session.type(b"The capital of France is\n")
        session.expect(b">>> ", timeout=240)  # Ends by itself within the default length.
        session.type(b"/set parameter num_predict 100000\n")
        session.expect(b">>> ")
        session.type(b"Once upon a time\n")
        _wait_running(cli_env, 1)
        session.type(b"\x03")  # Ctrl-C mid-answer: back to the prompt.
        session.expect(b">>> ")
        _wait_running(cli_env, 0)
        session.type(b"\x03")  # Ctrl-C at the prompt leaves.
        assert session.process.wait(timeout=30) == 0
    finally:
        session.close()


def _wait_running(cli_env: dict[str, str], count: int) -> None:
    """Wait until the server's running-sequence gauge for any model reads ``count``."""
    url = f"http://{cli_env['LLMPORT_HOST']}/metrics"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = httpx.get(url, timeout=5).text.splitlines()
        values = [float(ln.split()[-1]) for ln in lines
                  if ln.startswith("llmport_num_requests_running{")]  # fmt: skip
        if values and sum(values) == count:
            return
        time.sleep(0.1)
    raise AssertionError(f"llmport_num_requests_running never reached {count}")


class _TerminalSession:
    """``llmport ARGS`` with a pseudo-terminal as its controlling terminal, so typed
    control characters become signals as they do for a user."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.main, child = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmport.cli.main", *args],
            stdin=child, stdout=child, stderr=child, env=env, preexec_fn=_take_terminal,
        )  # fmt: skip
        os.close(child)
        self.seen = b""

    def type(self, data: bytes) -> None:
        self.seen = b""
        os.write(self.main, data)

    def expect(self, marker: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.main], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(f"no {marker!r} within {timeout}s; saw {self.seen!r}")
            self.seen += os.read(self.main, 4096)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.main)


def _take_terminal() -> None:
    """In the child: a session of its own, the pseudo-terminal as its controlling one, and
    Ctrl-C's signal handled as in a shell's foreground job (a test run started in the
    background, as by ``nohup ... &``, hands its children SIGINT ignored)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_run_with_a_missing_model_fails_with_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = llmport("run", str(tmp_path / "missing.gguf"), "hi", env=cli_env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_verbs_fail_with_one_line_when_no_server_answers(cli_env: dict[str, str]) -> None:
    for args in (["list"], ["ps"], ["show", "x"], ["rm", "x"], ["stop", "x"]):
        result = llmport(*args, env=cli_env)
        assert result.returncode == 1, args
        assert result.stderr.startswith("error: could not connect"), result.stderr


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str) -> None:
    result = llmport(verb, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        data = write_tiny_model(tmp_path / "tiny-Q8_0.gguf", seed=7).read_bytes()
        hub.add_file(REPO, "tiny-Q8_0.gguf", data)
        yield hub


def test_model_verbs_against_a_server(
    cli_env: dict[str, str], hub: FakeHub, tmp_path: Path, tiny_model_path: Path
) -> None:
    env = {**cli_env, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    name = f"hf.co/{REPO}:Q8_0"

    def ok(*args: str) -> str:
        result = llmport(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    # `run` pulls what it does not have, and starts the server.
    assert ok("run", name, "hello", "--max-tokens", "2")
    listed = ok("ls")
    assert listed.startswith("NAME") and name in listed and "gemma3:270m" in listed
    assert "architecture" in ok("show", name) and "llama" in ok("show", name)
    assert "capabilities        completion, embedding" in ok("show", name)
    assert ok("show", name, "--modelfile").startswith("FROM ")
    assert name in ok("ps")
    ok("stop", name)
    assert name not in ok("ps")
    ok("cp", name, "copied")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM {tiny_model_path}\nPARAMETER temperature 0.1\nSYSTEM """Hi."""\n')
    ok("create", "custom", "-f", str(modelfile))
    assert "temperature 0.1" in ok("show", "custom")
    ok("rm", "copied", "custom", name)
    assert name not in ok("list")
    pulled = llmport("pull", name, env=env)  # Not a terminal: plain lines.
    assert pulled.returncode == 0 and "success" in pulled.stderr
    bad = llmport("pull", f"hf.co/{REPO}:Q2_K", env=env)
    last = bad.stderr.splitlines()[-1]  # After any progress lines, one reason.
    assert bad.returncode == 1 and last.startswith("error: ") and "Q8_0" in last
    broken = tmp_path / "Broken"
    broken.write_text("FROM x\nBOGUS y\n")
    result = llmport("create", "bad", "-f", str(broken), env=env)
    assert result.returncode == 1 and "line 2" in result.stderr
