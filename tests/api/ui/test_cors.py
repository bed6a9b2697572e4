"""Cross-origin use (``--allowed-origins``), the page's routes and ``/`` for browsers,
against a real ``llmport serve`` with an API key."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from ui_helpers import APP_ORIGIN, KEY

from llmport.api.cors import CorsMiddleware, OriginPolicy
from llmport.config import ServerSettings
from llmport.errors import UnsupportedOption
from server_helpers import Server

EVIL_ORIGIN = "http://evil.example"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(keyed_server: Server) -> Server:
    return keyed_server


def preflight(
    server: Server,
    origin: str,
    path: str = "/v1/chat/completions",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
        **(extra or {}),
    }
    return httpx.options(server.base_url + path, headers=headers)


@pytest.mark.parametrize("origin", [APP_ORIGIN, "http://localhost:5173", "http://localhost"])
def test_a_preflight_from_an_allowed_origin_is_answered_without_the_key(
    server: Server, origin: str
) -> None:
    answer = preflight(server, origin)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == origin
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "access-control-allow-credentials" not in answer.headers
    assert "access-control-allow-private-network" not in answer.headers
    assert "Origin" in answer.headers["vary"]


def test_a_public_page_allowed_here_may_reach_this_private_server(server: Server) -> None:
    asked = {"Access-Control-Request-Private-Network": "true"}
    allowed = preflight(server, APP_ORIGIN, extra=asked)
    assert allowed.headers["access-control-allow-private-network"] == "true"
    refused = preflight(server, EVIL_ORIGIN, extra=asked)
    assert refused.status_code == 403
    assert "access-control-allow-private-network" not in refused.headers


@pytest.mark.parametrize(
    "origin",
    [EVIL_ORIGIN, "http://localhost.evil.example:5173", "null", "https://app.example:3001",
     "http://app.example:3000"],
)  # fmt: skip
def test_other_origins_are_refused_and_never_echoed(server: Server, origin: str) -> None:
    answer = preflight(server, origin)
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers
    # A "simple" request needs no preflight in a browser: it must not reach the route.
    posted = httpx.post(f"{server.base_url}/api/copy", headers={**BEARER, "Origin": origin},
                        content='{"source": "tiny", "destination": "stolen"}')  # fmt: skip
    assert posted.status_code == 403
    assert posted.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in posted.headers
    names = [
        m["name"] for m in httpx.get(f"{server.base_url}/api/tags", headers=BEARER).json()["models"]
    ]
    assert "stolen:latest" not in names and "stolen" not in names


def test_answers_to_allowed_origins_are_marked_and_the_key_still_counts(server: Server) -> None:
    answer = httpx.get(f"{server.base_url}/v1/models", headers={**BEARER, "Origin": APP_ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert answer.headers["access-control-expose-headers"] == "Retry-After"
    refused = httpx.get(f"{server.base_url}/v1/models", headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401  # The page can read why (it is marked too).
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN


def test_the_server_s_own_page_is_same_origin(server: Server) -> None:
    answer = httpx.get(
        f"{server.base_url}/v1/models", headers={**BEARER, "Origin": server.base_url}
    )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_a_name_pointed_at_this_server_is_not_its_own_origin(server: Server) -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, so its page's requests carry
    its own name as Host and as Origin; only an address makes a request same-origin."""
    port = server.base_url.rsplit(":", 1)[1]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    answer = httpx.post(f"{server.base_url}/api/copy", headers={**BEARER, **rebound},
                        content='{"source": "tiny", "destination": "stolen"}')  # fmt: skip
    assert answer.status_code == 403


def test_browsers_at_the_root_go_to_the_page_and_other_clients_do_not(server: Server) -> None:
    browser = httpx.get(server.base_url + "/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status_code == 307 and browser.headers["location"] == "/ui/"
    plain = httpx.get(server.base_url + "/", headers=BEARER)
    assert plain.status_code == 200 and plain.text == "llmport is running"
    assert httpx.head(server.base_url + "/", headers=BEARER).status_code == 200


def test_the_page_is_served_without_the_key_and_its_data_routes_need_it(server: Server) -> None:
    page = httpx.get(f"{server.base_url}/ui/")
    assert page.status_code == 200 and 'src="js/app.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = httpx.get(f"{server.base_url}/ui/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{server.base_url}/ui/api/pulls").status_code == 401
    assert httpx.get(f"{server.base_url}/ui/api/server").status_code == 401
    assert httpx.get(f"{server.base_url}/ui/api/pulls", headers=BEARER).json() == {"pulls": []}
    assert httpx.get(f"{server.base_url}/ui/js/../../v1/models").status_code == 401


def test_any_origin_is_answered_with_a_literal_star() -> None:
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("hi"))])
    client = TestClient(CorsMiddleware(app, OriginPolicy(["*"])))
    with client:
        answer = client.get("/", headers={"Origin": "https://anyone.example", "Cookie": "a=b"})
        assert answer.headers["access-control-allow-origin"] == "*"
        asked = client.options("/", headers={"Origin": "https://anyone.example",
                                             "Access-Control-Request-Method": "GET"})  # fmt: skip
        assert asked.status_code == 204 and asked.headers["access-control-allow-origin"] == "*"


def test_the_default_allows_loopback_pages_only() -> None:
    policy = OriginPolicy(ServerSettings().allowed_origins)
    assert policy.allows("http://localhost:3000")
    assert OriginPolicy(["https://app.example"]).allows("http://localhost:3000")  # Added to.
    assert OriginPolicy(["https://app.example:443"]).allows("https://app.example")
    assert not OriginPolicy(["https://app.example"]).allows("http://app.example")
    for origin in ("http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]:8443",
                   "http://LOCALHOST:1"):  # fmt: skip
        assert policy.allows(origin), origin
    for origin in ("http://192.168.1.5:3000", "http://localhost.example", "null", "file://",
                   "http://127.0.0.1.evil.example"):  # fmt: skip
        assert not policy.allows(origin), origin


@pytest.mark.parametrize("entry", ["localhost:3000", "ftp://x.example", "http://a.example/path",
                                   "javascript:alert(1)", ""])  # fmt: skip
def test_a_bad_allowed_origin_fails_at_start(entry: str) -> None:
    with pytest.raises(UnsupportedOption, match="--allowed-origins"):
        ServerSettings(allowed_origins=[entry])
