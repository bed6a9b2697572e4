"""The models and server views in a real Chromium: a pull from the local fake Hub with
live progress that survives a reload, copy, Modelfile, delete, load, and the server view
showing a loaded model and unloading it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from ui_helpers import close, open_page, serve

from fake_hub import FakeHub
from server_helpers import Server
from tiny_model import write_tiny_model

REPO = "tester/tiny-GGUF"
PULLED = f"hf.co/{REPO}:Q8_0"
#: The pull is cut this many times (each resume waits 0.1 s): long enough to watch.
NUM_CUTS = 40
#: Records every percentage the pull's progress bar shows.
WATCH_PERCENT = """() => {
  window.percents = [];
  window.rates = [];
  new MutationObserver(() => {
    for (const item of document.querySelectorAll('[data-testid=pull]')) {
      window.percents.push(Number(item.dataset.percent));
      const rate = item.textContent.match(/[\\d.]+ [KMG]?i?B\\/s, [^ ]+ [^ ]+ left/);
      if (rate) window.rates.push(rate[0]);
    }
  }).observe(document.querySelector('[data-testid=pulls]'),
             {subtree: true, childList: true, attributes: true});
}"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    folder = tmp_path_factory.mktemp("ui-hub")
    with FakeHub() as hub:
        data = write_tiny_model(folder / "tiny-Q8_0.gguf", seed=6).read_bytes()
        hub.add_file(REPO, "tiny-Q8_0.gguf", data)
        hub.drop_after(REPO, "tiny-Q8_0.gguf", len(data) // NUM_CUTS, times=NUM_CUTS - 1)
        yield hub


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    ui_models_dir: Path,
    gemma_model_path: Path,
    hub: FakeHub,
) -> Iterator[Server]:
    hf_home = tmp_path_factory.mktemp("ui-hf")
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1"}
    yield from serve(tmp_path_factory, ui_models_dir, gemma_model_path, env=env)


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    page = open_page(browser, server.base_url, "models")
    yield page
    close(page)


def test_a_pull_shows_live_progress_through_a_reload_and_the_model_appears(
    page: Page, server: Server, screenshot_dir: Path
) -> None:
    page.evaluate(WATCH_PERCENT)
    page.fill("#pull-ref", PULLED)
    page.click("#pull")
    item = page.locator(f"[data-testid=pull][data-model='{PULLED}']")
    expect(item).to_have_attribute("data-state", "running")
    expect(item.locator("[data-testid=pull-quant]")).to_have_text("quant Q8_0")
    page.wait_for_function("() => window.percents.some(p => p > 0 && p < 60)")
    before = page.evaluate("window.percents")

    page.reload()  # The pull goes on in the server; the page finds it again.
    page.wait_for_selector("body[data-ready=yes]")
    page.evaluate(WATCH_PERCENT)
    expect(item).to_have_attribute("data-state", "done", timeout=60_000)
    expect(item).to_have_attribute("data-percent", "100")
    after = page.evaluate("window.percents")
    moving = sorted({p for p in before + after if 0 < p < 100})
    assert len(moving) >= 3, f"the bar did not move: {before} then {after}"
    assert page.evaluate("window.rates"), "no speed and time left shown"
    row = page.locator(f"[data-testid=models] tr[data-model='{PULLED}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("Q8_0")
    expect(row).to_contain_text("llama")
    page.screenshot(path=screenshot_dir / "models.png")


def test_a_failed_pull_says_why_and_only_hub_references_are_pulled(
    page: Page, server: Server
) -> None:
    page.fill("#pull-ref", f"hf.co/{REPO}:Q2_K")
    page.click("#pull")
    item = page.locator(f"[data-testid=pull][data-model='hf.co/{REPO}:Q2_K']")
    expect(item).to_have_attribute("data-state", "error")
    expect(item).to_contain_text("Q8_0")  # The quants the repo has.
    page.fill("#pull-ref", "gemma3:270m")
    page.click("#pull")
    expect(page.locator("#models-error")).to_contain_text("hf.co/USER/REPO")
    refused = httpx.post(f"{server.base_url}/ui/api/pulls", json={"model": "../etc"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"


def test_copy_show_the_modelfile_and_delete(page: Page, server: Server) -> None:
    row = page.locator("[data-testid=models] tr[data-model='tiny']")
    row.locator("[data-testid=copy]").click()
    page.fill("[data-testid=copy-name]", "tiny-copy")
    page.click("[data-testid=copy-ok]")
    copied = page.locator("[data-testid=models] tr[data-model='tiny-copy:latest']")
    expect(copied).to_be_visible()
    copied.locator("[data-testid=show]").click()
    expect(page.locator("[data-testid=modelfile]")).to_contain_text("FROM ")

    delete = copied.locator("[data-testid=delete]")
    delete.click()
    expect(delete).to_have_text("Really delete?")
    delete.click()
    expect(copied).to_have_count(0)
    names = [m["name"] for m in httpx.get(f"{server.base_url}/api/tags").json()["models"]]
    assert "tiny-copy:latest" not in names


def test_load_see_it_in_the_server_view_and_unload_it(
    page: Page, server: Server, screenshot_dir: Path
) -> None:
    row = page.locator("[data-testid=models] tr[data-model='tiny']")
    row.locator("[data-testid=load]").click()
    expect(row).to_have_attribute("data-loaded", "yes", timeout=30_000)
    expect(page.locator("[data-testid=models-loaded] tr[data-model='tiny']")).to_be_visible()
    page.click("nav button[data-view=chat]")  # The chat marks what is loaded.
    expect(page.locator("#model option[value=tiny]")).to_have_attribute("data-loaded", "yes")
    expect(page.locator("#model option[value=tiny]")).to_have_text("tiny ● loaded")
    expect(page.locator("#model option[value='gemma3:270m']")).to_have_attribute(
        "data-loaded", "no"
    )
    body = {"model": "tiny", "prompt": "hello", "stream": False, "options": {"num_predict": 24}}
    for _ in range(3):  # Something for the plots to show.
        httpx.post(f"{server.base_url}/api/generate", json=body, timeout=60).raise_for_status()

    page.click("nav button[data-view=server]")
    loaded = page.locator("[data-testid=loaded] tr[data-model='tiny']")
    expect(loaded).to_be_visible()
    expect(loaded).to_contain_text("iB")  # Its memory.
    expect(loaded).to_contain_text("in ")  # When it unloads.
    expect(page.locator("[data-testid=memory]")).to_contain_text("tiny:")
    running = page.locator("[data-testid=sequences] tr[data-model=tiny] [data-testid=running]")
    expect(running).to_have_text("0")
    page.wait_for_function(  # Two scrapes at least: rates need a difference.
        "() => document.querySelector('[data-chart=\"Output tokens/s\"] .legend')"
        ".textContent.includes('output')"
    )
    expect(page.locator("[data-testid=latency]")).to_contain_text("ms")
    page.screenshot(path=screenshot_dir / "server.png")

    loaded.locator("[data-testid=unload]").click()
    expect(loaded).to_have_count(0, timeout=15_000)
    assert httpx.get(f"{server.base_url}/api/ps").json()["models"] == []
