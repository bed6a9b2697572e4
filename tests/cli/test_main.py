"""The command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def llmport(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmport.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_run_answers_a_one_shot_prompt(tiny_model_path: Path) -> None:
    result = llmport("run", str(tiny_model_path), "hello", "--max-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")


def test_run_reads_piped_stdin(tiny_model_path: Path) -> None:
    result = llmport("run", str(tiny_model_path), "--max-tokens", "3", stdin="hello there")
    assert result.returncode == 0, result.stderr


def test_run_with_a_missing_model_fails_with_one_line(tmp_path: Path) -> None:
    result = llmport("run", str(tmp_path / "missing.gguf"), "hi")
    assert result.returncode != 0
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_works() -> None:
    assert llmport("--help").returncode == 0
    assert llmport("run", "--help").returncode == 0
