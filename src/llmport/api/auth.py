"""Bearer API-key check on every route but ``/health`` and the web page's files (a plain
ASGI middleware, so streaming responses pass through untouched). The page (``/ui/``)
holds no data: it asks for the key, then sends it like any client; its JSON routes
(``/ui/api/``) need the key."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from llmport.api.anthropic.errors import anthropic_error_body, is_anthropic_path
from llmport.api.errors import error_body

OPEN_PATHS = frozenset({"/health"})


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        message = "missing or wrong API key (send Authorization: Bearer KEY or x-api-key: KEY)"
        shaped = (
            anthropic_error_body(401, message)
            if is_anthropic_path(scope["path"])
            else error_body(401, message, "invalid_api_key")
        )
        body = json.dumps(shaped).encode()
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        """``Authorization: Bearer KEY``, or Anthropic's ``x-api-key: KEY``."""
        for name, value in scope["headers"]:
            if name == b"authorization" and hmac.compare_digest(value, self._expected):
                return True
            if name == b"x-api-key" and hmac.compare_digest(value, self._key):
                return True
        return False


def is_open(path: str) -> bool:
    """Paths served without the key: /health and the page's static files."""
    if path in OPEN_PATHS:
        return True
    return (path == "/ui" or path.startswith("/ui/")) and not path.startswith("/ui/api/")
