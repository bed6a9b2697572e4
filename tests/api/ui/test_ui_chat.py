"""The chat view in a real Chromium against ``llmport serve``: streaming, stop (the
engine's running gauge drops to 0), regenerate, edit, stored conversations, and model
output that tries to become live HTML."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect
from ui_helpers import (
    REPORT,
    close,
    last_answer,
    open_page,
    select_model,
    send,
    serve,
    set_params,
    timed_open,
)

from server_helpers import Server

#: Records the answer's text length at every change the page makes to it.
WATCH_LENGTHS = """() => {
  window.lengths = [];
  new MutationObserver(() => {
    const answers = document.querySelectorAll('[data-role=assistant] .body');
    const last = answers[answers.length - 1];
    if (last) window.lengths.push(last.textContent.length);
  }).observe(document.getElementById('messages'),
             {subtree: true, childList: true, characterData: true});
}"""
HOSTILE = (
    'Look: <script>window.pwned = 1</script> and <img src=x onerror="window.pwned = 2">\n\n'
    "[click me](javascript:window.pwned=3) [ok](https://example.com/a) "
    '<a href="javascript:window.pwned=4">raw</a>\n\n'
    '```html\n<svg onload="window.pwned = 5"></svg>\n```\n'
    '**bold <b onmouseover="window.pwned=6">x</b>**'
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ui_models_dir: Path, gemma_model_path: Path
) -> Iterator[Server]:
    yield from serve(tmp_path_factory, ui_models_dir, gemma_model_path)


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    page = open_page(browser, server.base_url)
    yield page
    close(page)


def test_a_streamed_answer_appears_in_pieces_with_its_figures(
    browser: Browser, server: Server, screenshot_dir: Path
) -> None:
    page, seconds = timed_open(browser, server.base_url)
    REPORT.append(
        f"UI cold load (navigation start to the chat showing data): {seconds * 1e3:.0f} ms"
    )
    select_model(page, "gemma3:270m")
    set_params(page, temperature=0, max_tokens=16)
    page.evaluate(WATCH_LENGTHS)
    send(page, "Write a few sentences about the sea.")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-state", "done", timeout=60_000)
    lengths = [n for n in page.evaluate("window.lengths") if n > 0]
    assert len(set(lengths)) >= 3, f"the answer came in one piece: {lengths}"
    assert answer.locator(".body").inner_text().strip()
    figures = answer.locator("[data-testid=figures]")
    assert figures.locator("[data-figure=ttft] b").inner_text().endswith(("ms", "s"))
    assert int(figures.locator("[data-figure=output] b").inner_text()) > 1
    assert int(figures.locator("[data-figure=prompt] b").inner_text()) > 0
    assert float(figures.locator("[data-figure=tps] b").inner_text()) > 0
    assert figures.locator("[data-figure=cached] b").inner_text().isdigit()
    page.screenshot(path=screenshot_dir / "chat.png")
    close(page)


def test_stop_aborts_the_answer_and_the_running_gauge_drops_to_zero(page: Page) -> None:
    # The real server answers; the request only gains ignore_eos, so the base model
    # cannot end its answer before the stop.
    page.route("**/v1/chat/completions", _without_eos)
    select_model(page, "gemma3:270m")
    set_params(page, temperature=0.8, max_tokens=4000)
    send(page, "Tell me a very long story.")
    answer = last_answer(page)
    expect(answer.locator(".body")).not_to_have_text("", timeout=60_000)
    page.click("nav button[data-view=server]")
    running = page.locator(
        "[data-testid=sequences] tr[data-model='gemma3:270m'] [data-testid=running]"
    )
    expect(running).to_have_text("1", timeout=15_000)
    page.click("nav button[data-view=chat]")
    page.click("#stop")
    expect(answer).to_have_attribute("data-state", "stopped")
    stopped_at = len(answer.locator(".body").inner_text())
    page.click("nav button[data-view=server]")
    expect(running).to_have_text("0", timeout=15_000)
    page.click("nav button[data-view=chat]")
    assert len(answer.locator(".body").inner_text()) == stopped_at


def test_regenerate_edit_and_conversations_kept_in_the_browser(page: Page) -> None:
    requests: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            requests.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/v1/chat/completions")
            else None
        ),
    )
    select_model(page, "tiny")
    set_params(page, max_tokens=8, seed=7)
    page.fill("#system", "You are terse.")
    page.dispatch_event("#system", "change")
    send(page, "first question")
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    page.click("[data-testid=regenerate]")
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    assert page.locator("[data-testid=message]").count() == 2
    assert len(requests) == 2 and requests[0]["messages"] == requests[1]["messages"]
    cached = last_answer(page).locator("[data-figure=cached] b").inner_text()
    assert int(cached) > 0  # The same prompt again: its prefix came from the cache.
    assert requests[0]["messages"][0] == {"role": "system", "content": "You are terse."}
    assert requests[0]["seed"] == 7 and requests[0]["max_tokens"] == 8

    page.click("[data-testid=message][data-role=user] [data-testid=edit]")
    assert page.input_value("#prompt") == "first question"
    send(page, "second question")
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    users = page.locator("[data-testid=message][data-role=user]")
    expect(users).to_have_count(1)
    expect(users.first).to_contain_text("second question")
    assert requests[-1]["messages"][-1] == {"role": "user", "content": "second question"}

    page.reload()
    page.wait_for_selector("body[data-ready=yes]")
    expect(page.locator("[data-testid=conversations] li")).to_have_count(1)
    expect(page.locator("[data-testid=conversations] li")).to_contain_text("first question")
    expect(page.locator("[data-testid=message][data-role=user]")).to_contain_text("second")
    page.click("[data-testid=delete-conversation]")
    expect(page.locator("[data-testid=conversations] li")).to_have_count(0)
    page.reload()
    page.wait_for_selector("body[data-ready=yes]")
    expect(page.locator("[data-testid=conversations] li")).to_have_count(0)


def test_a_hostile_answer_is_shown_as_text_and_never_runs(page: Page) -> None:
    """The tiny models cannot be made to say this, so the stream is the server's format
    with hostile text in it (answered by the browser's route, in small pieces)."""
    page.route("**/v1/chat/completions", lambda route: _stream(route, HOSTILE))
    select_model(page, "tiny")
    send(page, "say something nasty")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-state", "done")
    body = answer.locator(".body")
    assert "<script>window.pwned = 1</script>" in body.inner_text()
    assert '<svg onload="window.pwned = 5"></svg>' in body.inner_text()
    assert body.locator("script, img, svg, b, iframe").count() == 0
    hrefs = body.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.com/a"]
    handlers = body.evaluate(
        "b => [...b.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
        ".filter(n => n.startsWith('on'))"
    )
    assert handlers == []
    assert body.locator("pre.code code").inner_text().startswith("<svg")
    body.hover()
    time.sleep(0.2)  # An onerror or onload would have fired by now.
    assert page.evaluate("window.pwned") is None


def test_markdown_answers_render_as_markdown(page: Page) -> None:
    text = (
        "# Title\n\nSome **bold**, *italic* and `code`.\n\n- one\n- two\n\n1. first\n\n"
        "```python\nprint('hi')\n```\n\n> quoted\n\nSee [the docs](https://example.com/d)."
    )
    page.route("**/v1/chat/completions", lambda route: _stream(route, text))
    select_model(page, "tiny")
    send(page, "markdown please")
    body = last_answer(page).locator(".body")
    expect(last_answer(page)).to_have_attribute("data-state", "done")
    expect(body.locator("h3")).to_have_text("Title")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("em")).to_have_text("italic")
    expect(body.locator("p code")).to_have_text("code")
    expect(body.locator("ul li")).to_have_count(2)
    expect(body.locator("ol li")).to_have_text("first")
    expect(body.locator("pre.code[data-language=python]")).to_have_text("print('hi')")
    expect(body.locator("blockquote")).to_have_text("quoted")
    expect(body.locator("a")).to_have_attribute("href", "https://example.com/d")
    expect(body.locator("a")).to_have_attribute("rel", "noopener noreferrer nofollow")


def test_json_answers_and_tool_calls_are_shown_as_such(page: Page) -> None:
    select_model(page, "tiny")
    set_params(page, max_tokens=64, temperature=0)
    hostile = '<img src=x onerror="window.pwned = 7">'
    schema = {"type": "object", "properties": {"html": {"enum": [hostile]}}, "required": ["html"]}
    page.fill("#schema", json.dumps(schema))
    page.dispatch_event("#schema", "change")
    send(page, "answer in JSON")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-state", "done")
    shown = answer.locator("[data-testid=json-answer] code").inner_text()
    assert json.loads(shown) == {"html": hostile}  # The real model, held to the schema.
    assert answer.locator("img").count() == 0 and page.evaluate("window.pwned") is None

    page.fill("#schema", "")
    page.dispatch_event("#schema", "change")
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    page.route("**/v1/chat/completions", lambda route: _stream(route, "", [call]))
    send(page, "weather?")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-state", "done")
    tool = answer.locator("[data-testid=tool-call]")
    expect(tool).to_contain_text("get_weather")
    assert json.loads(tool.locator("code").inner_text()) == {"city": "Paris"}


def _without_eos(route: Route) -> None:
    body = json.loads(route.request.post_data or "{}")
    route.continue_(post_data=json.dumps({**body, "ignore_eos": True}))


def _stream(route: Route, text: str, tool_calls: list[dict[str, Any]] | None = None) -> None:
    """An OpenAI chat stream of ``text`` in 7-character pieces (then the tool calls)."""
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "tiny"}
    deltas: list[dict[str, Any]] = [{"content": text[i : i + 7]} for i in range(0, len(text), 7)]
    if tool_calls:
        deltas.append({"tool_calls": tool_calls})
    events = [{**base, "choices": [{"index": 0, "delta": d}]} for d in deltas]
    reason = "tool_calls" if tool_calls else "stop"
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    usage = {"prompt_tokens": 5, "completion_tokens": len(deltas), "total_tokens": 5 + len(deltas)}
    events.append({**base, "choices": [], "usage": usage})
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    route.fulfill(status=200, body=body, headers={"content-type": "text/event-stream"})
