"""Request bodies are JSON whose strings are Unicode text, or a 400.

Python's parser turns an escaped lone surrogate (``"\\ud800"``) into a ``str`` that no
UTF-8 encoder accepts, so the request would fail far from its cause (the worker pipe,
the registry, an error message echoing it) as a 500. Every router uses ``JsonRoute``,
which refuses such a body as invalid JSON before a route sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

#: Any escaped surrogate, paired or not: only bodies that have one are checked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return handle


class _JsonRequest(Request):
    async def json(self) -> Any:
        value = await super().json()
        body = await self.body()
        if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(value):
            raise json.JSONDecodeError(
                "a string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text",
                body.decode(errors="replace"),
                0,
            )
        return value


def _has_lone_surrogate(value: Any) -> bool:
    """Walked with a stack, not recursion: the body may nest as deep as the parser allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack += [*item, *item.values()]
        elif isinstance(item, list):
            stack += item
    return False
