"""What every route needs, hung on ``app.state`` by ``create_app`` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from llmport.api.metrics import Metrics
from llmport.chat.templates import is_jinja
from llmport.config import RequestLimits
from llmport.manager.manager import ModelManager
from llmport.store.library import Library
from llmport.store.registry import ModelRecord


@dataclass(frozen=True)
class AppState:
    manager: ModelManager
    metrics: Metrics
    library: Library
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: The format tool calls are parsed from (``--tool-call-parser``).
    tool_call_parser: str = "hermes"
    #: ``--chat-template``, by served name ("*": every model).
    chat_templates: dict[str, str] = field(default_factory=dict)

    def chat_template(self, name: str, record: ModelRecord | None) -> str | None:
        """The Jinja2 template that overrides the model's own for ``name``, if any:
        ``--chat-template``, else a Jinja2 TEMPLATE from its ``record`` (Modelfile)."""
        found = self.chat_templates.get(name) or self.chat_templates.get("*")
        if found is not None:
            return found
        if record is not None and record.template and is_jinja(record.template):
            return record.template
        return None


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.llmport
    return state
