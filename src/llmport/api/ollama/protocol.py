"""Ollama's request bodies, as its clients send them (unknown fields are ignored, as
Ollama ignores them). Responses are plain dicts built in ``convert.py``: Ollama's
objects are flat and many fields appear only in the final one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

KeepAlive = str | float | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Message(_Body):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class GenerateRequest(_Body):
    model: str
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool = True
    raw: bool = False
    format: str | dict[str, Any] | None = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: bool | str | None = None


class ChatRequest(_Body):
    model: str
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: bool | str | None = None


class EmbedRequest(_Body):
    model: str
    input: str | list[str] = ""
    truncate: bool = True
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = None


class EmbeddingsRequest(_Body):
    model: str
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class ModelRequest(_Body):
    """show / delete / pull name the model as ``model`` (older clients: ``name``)."""

    model: str | None = None
    name: str | None = None
    verbose: bool = False
    insecure: bool = False
    stream: bool = True

    @property
    def target(self) -> str:
        return self.model or self.name or ""


class CopyRequest(_Body):
    source: str
    destination: str


class CreateRequest(_Body):
    model: str | None = None
    name: str | None = None
    from_: str | None = Field(default=None, alias="from")
    modelfile: str | None = None
    files: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    license: str | list[str] | None = None
    quantize: str | None = None
    stream: bool = True
