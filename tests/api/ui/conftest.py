"""One headless Chromium (Debian's, driven by Playwright) for the whole session, and a
folder for the screenshots reviewers look at."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from ui_helpers import APP_ORIGIN, KEY, REPORT, serve

from server_helpers import Server

#: Answers come from real models on a shared CI machine: wait for them generously.
expect.set_options(timeout=30_000)

#: Where Debian's chromium package puts the browser (scripts/install.sh --dev installs it).
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        # install.sh --dev installs it (as CI does): a missing browser fails the UI tests
        # unless the machine says it cannot have one.
        if os.environ.get("LLMPORT_SKIP_BROWSER_TESTS") == "1":
            pytest.skip("chromium is not installed and LLMPORT_SKIP_BROWSER_TESTS=1")
        pytest.fail(
            "chromium is not installed: run scripts/install.sh --dev (as root or "
            "with sudo), or set LLMPORT_SKIP_BROWSER_TESTS=1 to skip the UI tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        started = time.monotonic()
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox"]
        )
        REPORT.append(f"chromium started in {time.monotonic() - started:.2f} s")
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    REPORT.append(f"UI screenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def ui_models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    """``tiny`` (fast, random weights); Gemma is served as the embedded default."""
    folder = tmp_path_factory.mktemp("ui-models")
    (folder / "tiny.gguf").symlink_to(tiny_model_path)
    return folder


@pytest.fixture(scope="session")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory, ui_models_dir: Path, gemma_model_path: Path
) -> Iterator[Server]:
    """A server with an API key and an allowed origin besides loopback pages (shared by
    the CORS and login tests)."""
    args = ["--api-key", KEY, "--allowed-origins", APP_ORIGIN]
    yield from serve(tmp_path_factory, ui_models_dir, gemma_model_path, *args)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)
