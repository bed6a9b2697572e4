"""``create_app``: the one FastAPI app serving every model on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from llmport import __version__
from llmport.api.anthropic.routes import router as anthropic_router
from llmport.api.auth import ApiKeyMiddleware
from llmport.api.cors import CorsMiddleware, OriginPolicy
from llmport.api.errors import install_error_handlers
from llmport.api.limits import BodySizeLimit
from llmport.api.metrics import Metrics
from llmport.api.ollama.generate import router as ollama_generate_router
from llmport.api.ollama.models import router as ollama_models_router
from llmport.api.openai.routes import router as openai_router
from llmport.api.rerank.routes import router as rerank_router
from llmport.api.responses.routes import router as responses_router
from llmport.api.serving import CLIENT_CLOSED
from llmport.api.state import AppState, app_state
from llmport.api.streaming import ClientGone
from llmport.api.ui.routes import BrowserRedirect, install_ui
from llmport.config import RequestLimits
from llmport.manager.manager import ModelManager
from llmport.models.resolver import Resolver


def create_app(
    manager: ModelManager,
    resolver: Resolver,
    *,
    api_key: str | None = None,
    preload: dict[str, float | None] | None = None,
    tool_call_parser: str = "hermes",
    reasoning_parser: str | None = None,
    chat_templates: dict[str, str] | None = None,
    limits: RequestLimits | None = None,
    allowed_origins: list[str] | None = None,
    allowed_media_domains: list[str] | None = None,
) -> FastAPI:
    """The app owns ``manager`` from start-up to shutdown (it closes it on exit).

    ``preload`` maps names to load at start to their keep_alive (None = the default).
    ``allowed_origins``: web pages that may call from a browser besides loopback ones.
    ``allowed_media_domains``: hosts whose image URLs requests may name.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        manager.start_spare()
        for name, keep_alive in (preload or {}).items():
            await manager.preload(await resolver.resolve(name), keep_alive)
        try:
            yield
        finally:
            await manager.close()

    app = FastAPI(title="llmport", version=__version__, lifespan=lifespan)
    limits = limits or RequestLimits()
    app.state.llmport = AppState(
        manager=manager,
        metrics=Metrics(),
        resolver=resolver,
        tool_call_parser=tool_call_parser,
        reasoning_parser=reasoning_parser,
        chat_templates=dict(chat_templates or {}),
        limits=limits,
        allowed_media_domains=list(allowed_media_domains or []),
    )
    install_error_handlers(app)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_request_bytes)
    if api_key:  # Added last, so it runs first: no body is read for a wrong key.
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_middleware(BrowserRedirect)  # A browser at / goes to the page, key or not.
    # Outermost: preflights are answered (and foreign origins refused) before the key.
    app.add_middleware(CorsMiddleware, policy=OriginPolicy(allowed_origins or []))
    app.include_router(openai_router)
    app.include_router(ollama_generate_router)
    app.include_router(ollama_models_router)
    app.include_router(anthropic_router)
    app.include_router(responses_router)
    app.include_router(rerank_router)
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_api_route("/metrics", _metrics, methods=["GET"])
    install_ui(app, resolver.library)
    return app


async def _health() -> Response:
    return Response(status_code=200)


async def _metrics(request: Request) -> Response:
    state = app_state(request)
    body = await state.metrics.render(state.manager)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _client_gone(_: Request, __: Exception) -> Response:
    return Response(status_code=CLIENT_CLOSED)
