"""What one request may ask for, checked before any work or memory is spent on it.

Every dimension a client controls is bounded here (or, for schemas, where they are
compiled: ``chat/structured.py``), so no request allocates in proportion to an
unchecked number: the body's size (413, checked while it arrives), then, once it
is parsed and converted, ``n``, the number of prompts, each prompt's length,
messages, stop strings, ``logit_bias`` and tools (400 naming the field and limit).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmport.api.errors import error_body
from llmport.config import RequestLimits
from llmport.errors import InvalidParameter
from llmport.types import GenerationRequest

#: Stop strings per request and characters per stop string (the detokenizer holds back
#: up to the longest one's length before it streams text).
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 1024
MAX_LOGIT_BIAS = 1024
MAX_TOOLS = 256


def check_requests(limits: RequestLimits, requests: list[GenerationRequest]) -> None:
    """Raise InvalidParameter for the first limit ``requests`` (one body's) exceed."""
    _limit(len(requests), limits.max_prompts, "prompt", "prompts (or inputs)")
    for req in requests:
        _check_one(limits, req)


def check_text(limits: RequestLimits, text: str, param: str) -> None:
    _limit(len(text), limits.max_prompt_chars, param, "characters")


def _check_one(limits: RequestLimits, req: GenerationRequest) -> None:
    params = req.params
    _limit(params.n, limits.max_n, "n", "choices (n)")
    _limit(len(req.prompt or ""), limits.max_prompt_chars, "prompt", "prompt characters")
    _limit(len(req.prompt_token_ids or []), limits.max_prompt_chars, "prompt", "prompt tokens")
    if req.messages is not None:
        _limit(len(req.messages), limits.max_messages, "messages", "messages")
        num_chars = sum(len(json.dumps(m, default=str)) for m in req.messages)
        _limit(num_chars, limits.max_prompt_chars, "messages", "characters of messages")
    _limit(len(params.stop), MAX_STOP_STRINGS, "stop", "stop strings")
    longest = max((len(s) for s in params.stop), default=0)
    _limit(longest, MAX_STOP_CHARS, "stop", "characters in a stop string")
    _limit(len(params.stop_token_ids), MAX_STOP_STRINGS, "stop_token_ids", "stop token ids")
    _limit(len(params.logit_bias), MAX_LOGIT_BIAS, "logit_bias", "logit_bias entries")
    _limit(len(req.tools or []), MAX_TOOLS, "tools", "tools")


def _limit(value: int, limit: int, param: str, what: str) -> None:
    if value > limit:
        raise InvalidParameter(
            f"{param}: {value} {what} asked; this server accepts at most {limit}", param=param
        )


class BodySizeLimit:
    """413 for a body over ``max_bytes``: by its Content-Length before reading it, or
    once the bytes that arrive pass the limit (chunked bodies have no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        num_received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal num_received
            message = await receive()
            num_received += len(message.get("body", b""))
            if num_received > self.max_bytes:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        message = f"the request body is larger than this server accepts ({self.max_bytes} bytes)"
        body = json.dumps(error_body(413, message, "request_too_large")).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
