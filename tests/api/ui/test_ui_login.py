"""With ``--api-key`` the page asks for the key once and serves no data without it."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Browser, Response, expect
from ui_helpers import KEY, close, last_answer, open_page, select_model, send, set_params

from server_helpers import Server

#: Where the server's data is (the page's own files are not).
DATA_PATHS = ("/api/", "/v1/", "/metrics", "/ui/api/")


def test_the_page_asks_for_the_key_refuses_a_wrong_one_and_keeps_the_right_one(
    browser: Browser, keyed_server: Server
) -> None:
    context = browser.new_context()
    answers: list[Response] = []
    context.on("response", lambda answer: answers.append(answer))
    page = context.new_page()
    page.goto(f"{keyed_server.base_url}/")  # A browser at / is sent to the page.
    page.wait_for_selector("body[data-ready=login]")
    assert page.url == f"{keyed_server.base_url}/ui/"
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    data = [a for a in answers if urlsplit(a.url).path.startswith(DATA_PATHS)]
    assert data and all(a.status == 401 for a in data), [(a.url, a.status) for a in data]

    page.fill("#login-key", "wrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_have_text("Wrong key.")
    expect(page.locator("#nav")).to_be_hidden()

    page.fill("#login-key", KEY)
    page.click("#login-form button")
    page.wait_for_selector("body[data-ready=yes]")
    select_model(page, "tiny")
    set_params(page, max_tokens=4)
    send(page, "hello")
    expect(last_answer(page)).to_have_attribute("data-state", "done")

    page.reload()  # Asked once: the key is kept.
    page.wait_for_selector("body[data-ready=yes]")
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("localStorage.getItem('llmport.apiKey')") is None
    context.close()


def test_without_a_key_the_views_get_nothing(browser: Browser, keyed_server: Server) -> None:
    page = open_page(browser, keyed_server.base_url, "server")
    expect(page.locator("#login")).to_be_visible()
    for view in ("#view-chat", "#view-models", "#view-server"):
        expect(page.locator(view)).to_be_hidden()
    assert page.locator("#model option").count() == 0
    close(page)
