"""What every route needs, hung on ``app.state`` by ``create_app`` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from llmport.api.metrics import Metrics
from llmport.manager.manager import ModelManager
from llmport.store.library import Library


@dataclass(frozen=True)
class AppState:
    manager: ModelManager
    metrics: Metrics
    library: Library
    #: The format tool calls are parsed from (``--tool-call-parser``).
    tool_call_parser: str = "hermes"


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.llmport
    return state
