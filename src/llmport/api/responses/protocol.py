"""The Responses API's request body, in OpenAI's field order (unknown fields ignored, as
clients add some). Input items stay dicts: ``convert.py`` reads them by ``type``, and
responses are built as dicts in ``builder.py``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: dict[str, Any] | None = None


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    effort: str | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningConfig | None = None
    store: bool = True
    stream: bool = False
    temperature: float | None = None
    text: TextConfig | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_p: float | None = None
    user: str | None = None
    # Ollama's extra: how long the model stays loaded afterwards.
    keep_alive: str | float | None = None
