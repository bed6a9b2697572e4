"""What every route needs, hung on ``app.state`` by ``create_app`` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from llmport.api.metrics import Metrics
from llmport.chat.templates import is_jinja
from llmport.config import RequestLimits
from llmport.manager.manager import ModelManager
from llmport.models.resolver import Resolver
from llmport.models.spec import ModelSpec
from llmport.store.library import Library


@dataclass(frozen=True)
class AppState:
    manager: ModelManager
    metrics: Metrics
    #: The one place a model name becomes a ModelSpec (its ``library`` holds the store).
    resolver: Resolver
    limits: RequestLimits = field(default_factory=RequestLimits)
    #: The format tool calls are parsed from (``--tool-call-parser``).
    tool_call_parser: str = "hermes"
    #: ``--reasoning-parser``; None: the one a model's template implies, if any.
    reasoning_parser: str | None = None
    #: ``--chat-template``, by served name ("*": every model).
    chat_templates: dict[str, str] = field(default_factory=dict)
    #: Hosts whose image URLs requests may name (``--allowed-media-domains``).
    allowed_media_domains: list[str] = field(default_factory=list)

    @property
    def library(self) -> Library:
        return self.resolver.library

    def chat_template(self, spec: ModelSpec) -> str | None:
        """The Jinja2 template that overrides the model's own for ``spec``, if any:
        ``--chat-template``, else a Jinja2 TEMPLATE from its Modelfile."""
        found = self.chat_templates.get(spec.name) or self.chat_templates.get("*")
        if found is not None:
            return found
        if spec.template and is_jinja(spec.template):
            return spec.template
        return None


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.llmport
    return state
