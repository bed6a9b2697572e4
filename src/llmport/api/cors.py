"""Cross-origin requests from browsers: which web pages (origins) may call the server.

A page served from another origin (Open WebUI in its browser mode, a developer's page)
may call the server only when its origin is allowed: loopback pages on any port always
(as Ollama's default origins), and those ``--allowed-origins`` adds (as ``OLLAMA_ORIGINS``
adds to them). The rules:

- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here,
  before the API-key check: a browser never sends credentials with one.
- A request whose ``Origin`` is neither allowed nor the server's own origin gets 403
  and never reaches a route: browsers send "simple" cross-origin POSTs without a
  preflight, so merely hiding the answer would still let any page delete or pull models.
- The allowed origin is echoed only when it matched an entry; ``*`` (allow any origin)
  is answered as a literal ``*``, never by reflecting the caller's origin, and no
  credentials (cookies) are ever allowed: clients authenticate with a Bearer key.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmport.api.errors import error_body
from llmport.config import DEFAULT_ALLOWED_ORIGINS

ALLOWED_METHODS = "GET, POST, PUT, DELETE, HEAD, OPTIONS"
#: Headers a page may read beyond the safelisted ones (503s say when to retry).
EXPOSED_HEADERS = "Retry-After"
#: Seconds a browser may cache a preflight's answer.
PREFLIGHT_MAX_AGE = "600"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginPolicy:
    """Loopback pages (``DEFAULT_ALLOWED_ORIGINS``) and ``entries``: ``*`` (any origin),
    an exact origin (``https://app.example:3000``), or an origin with any port
    (``http://host:*``)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.allows_any = False
        self._exact: set[tuple[str, str, int]] = set()  # (scheme, host, port)
        self._any_port: set[tuple[str, str]] = set()
        for entry in [*DEFAULT_ALLOWED_ORIGINS, *entries]:
            text = entry.strip().rstrip("/").lower()
            if text == "*":
                self.allows_any = True
            elif text.endswith(":*"):
                self._any_port.add(_scheme_host(text[:-2]))
            elif (parts := _split_origin(text)) is not None:
                self._exact.add(parts)  # https://a.example and :443 are one origin.

    def allows(self, origin: str) -> bool:
        if self.allows_any:
            return True
        parts = _split_origin(origin.lower())
        if parts is None:
            return False
        return parts in self._exact or (parts[0], parts[1]) in self._any_port


class CorsMiddleware:
    """Answers preflights, refuses foreign origins, marks allowed answers (plain ASGI, so
    streams pass through untouched)."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        origin = headers.get("origin") if headers is not None else None
        if headers is None or origin is None:
            await self.app(scope, receive, send)
            return
        is_preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if _is_same_origin(origin, headers.get("host"), scope.get("scheme", "http")):
            if not is_preflight:  # The server's own page (/ui): nothing to mark.
                await self.app(scope, receive, send)
                return
        elif not self.policy.allows(origin):
            await _refuse(send, origin)
            return
        allow_origin = "*" if self.policy.allows_any else origin
        if is_preflight:
            await _preflight(send, allow_origin, headers)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["access-control-allow-origin"] = allow_origin
                out["access-control-expose-headers"] = EXPOSED_HEADERS
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, marked)


async def _preflight(send: Send, allow_origin: str, headers: Headers) -> None:
    answer = [
        (b"access-control-allow-origin", allow_origin.encode()),
        (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
        (b"vary", b"Origin"),
    ]
    requested = headers.get("access-control-request-headers")
    if requested:  # Any header may be sent (Authorization included): the key is the guard.
        answer.append((b"access-control-allow-headers", requested.encode("latin-1")))
    if headers.get("access-control-request-private-network") == "true":
        # Chrome asks before a public page calls a loopback or LAN server: an origin
        # allowed here may.
        answer.append((b"access-control-allow-private-network", b"true"))
    await send({"type": "http.response.start", "status": 204, "headers": answer})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Send, origin: str) -> None:
    message = (
        f"origin {origin!r} may not call this server; allow it with --allowed-origins "
        "(LLMPORT_ALLOWED_ORIGINS)"
    )
    body = json.dumps(error_body(403, message, "origin_not_allowed")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"vary", b"Origin"),
    ]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _is_same_origin(origin: str, host: str | None, scheme: str) -> bool:
    """Whether ``origin`` is this server as the browser reached it by address (its Host
    header an IP address). A name is not trusted so: a page of any domain can point its
    name at this server (DNS rebinding); list such a name in ``--allowed-origins``."""
    parts = _split_origin(origin.lower())
    if parts is None or host is None:
        return False
    own = _split_origin(f"{scheme}://{host.lower()}")
    return own is not None and parts == own and _is_ip(own[1].strip("[]"))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``scheme://host[:port]``; None for anything else (``null``,
    paths, user info)."""
    try:
        url = urlsplit(origin)
        port = url.port
    except ValueError:
        return None
    if url.scheme not in _DEFAULT_PORTS or not url.hostname or url.path or url.username:
        return None
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return url.scheme, host, port if port is not None else _DEFAULT_PORTS[url.scheme]


def _scheme_host(text: str) -> tuple[str, str]:
    scheme, _, host = text.partition("://")
    return scheme, host
