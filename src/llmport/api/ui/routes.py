"""Serving the page: ``/ui/`` (static files from the package), ``/`` for browsers, and
the page's own small JSON routes under ``/ui/api/``.

``/ui/api/pulls`` (GET: pulls started from the page, newest first; POST ``{"model":
"hf.co/USER/REPO[:QUANT]"}``: start one, 202) keeps pull progress on the server, where a
reloaded page finds it. ``/ui/api/server`` tells the page the memory budget and the
loaded-model limit, which no public route reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from llmport import __version__
from llmport.api.json_body import JsonRoute
from llmport.api.state import app_state
from llmport.api.ui.pulls import PullTracker
from llmport.store.library import Library

STATIC_DIR = Path(__file__).parent / "static"
#: Model output is shown by this page: even if a bug let markup through, nothing from
#: elsewhere loads and no inline script runs.
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

#: The page's own routes: not part of the public API (left out of /openapi.json).
router = APIRouter(prefix="/ui/api", route_class=JsonRoute, include_in_schema=False)


class PullBody(BaseModel):
    model: str


def install_ui(app: FastAPI, library: Library) -> None:
    """Add the page's routes and files to ``app`` (after the API routes: ``/ui`` is a
    mount that would take any path under it)."""
    app.state.llmport_pulls = PullTracker(library)
    app.include_router(router)
    app.mount("/ui", PageFiles(directory=STATIC_DIR, html=True), name="ui")


@router.get("/pulls")
async def pulls(request: Request) -> dict[str, Any]:
    return {"pulls": _tracker(request).list()}


@router.post("/pulls", status_code=202)
async def start_pull(body: PullBody, request: Request) -> JSONResponse:
    return JSONResponse(_tracker(request).start(body.model), status_code=202)


@router.get("/server")
async def server(request: Request) -> dict[str, Any]:
    manager = app_state(request).manager
    return {
        "version": __version__,
        "memory_budget_bytes": manager.budget_bytes,
        "max_loaded_models": manager.settings.max_loaded_models,
    }


class PageFiles(StaticFiles):
    """The package's static files with the page's security headers."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
        status_code: int = 200,
    ) -> Response:  # fmt: skip
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


class BrowserRedirect:
    """A browser asking for ``/`` (``Accept: text/html``) goes to the page; every other
    client still gets Ollama's ``llmport is running``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] == "GET":
            accept = dict(scope["headers"]).get(b"accept", b"")
            if b"text/html" in accept:
                headers = [(b"location", b"/ui/"), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 307, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


def _tracker(request: Request) -> PullTracker:
    tracker: PullTracker = request.app.state.llmport_pulls
    return tracker
