"""Every error leaves as OpenAI's ``{"error": {message, type, param, code}}`` with its status.

Mapped once here from the error classes (never from message text).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llmport.api.anthropic.errors import anthropic_error_body, is_anthropic_path
from llmport.errors import LlmportError, QueueFull

logger = logging.getLogger(__name__)


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _type(status), "param": param, "code": code}}


def _type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status < 500:
        return "invalid_request_error"
    return "server_error"


def is_ollama(request: Request) -> bool:
    """Ollama's routes answer errors in Ollama's shape: ``{"error": "..."}``."""
    return request.url.path.startswith("/api/")


def shaped_error(
    request: Request,
    status: int,
    message: str,
    code: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error in the shape of the dialect the request's path belongs to."""
    body: dict[str, Any]
    if is_ollama(request):
        body = {"error": message}
    elif is_anthropic_path(request.url.path):
        body = anthropic_error_body(status, message)
    else:
        body = error_body(status, message, code, param)
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    """One line naming the first bad field (and how many others are bad)."""
    problems = error.errors()
    first = problems[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    if first.get("type") == "json_invalid":
        message, param = f"the body is not valid JSON: {first.get('ctx', {}).get('error')}", None
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problems)"
    return message, param


def install_error_handlers(app: FastAPI) -> None:
    async def on_llmport_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, LlmportError)
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, QueueFull) else None
        return shaped_error(request, error.status, error.message, error.code, error.param, headers)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        message, param = validation_message(error)
        return shaped_error(request, 400, message, "invalid_request", param)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return shaped_error(
            request, error.status_code, str(error.detail), "http_error", None, error.headers
        )

    async def on_bug(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=error)
        message = f"internal error: {type(error).__name__}"
        return shaped_error(request, 500, message, "internal_error")

    app.add_exception_handler(LlmportError, on_llmport_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_bug)
