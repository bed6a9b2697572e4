"""What every tool-call parser gives: the text around the calls, and the calls.

A parser knows where its format's calls start (``start``). While streaming, text is
passed through as content until that start appears (a possible partial start is held
back); from there on the rest is buffered and parsed when the answer ends. Calls are
normalized (arguments re-serialized as compact JSON), so a streamed answer yields
exactly the calls a whole one does.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from llmport.chat.structured import GrammarBuilder


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # A JSON object, as OpenAI sends it.
    id: str = field(default_factory=lambda: f"call_{secrets.token_hex(12)}")

    @classmethod
    def of(cls, name: Any, arguments: Any) -> ToolCall | None:
        """A call from parsed parts, or None when they are not a name and an object."""
        if not isinstance(name, str) or not name:
            return None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return None
        return cls(name, json.dumps(arguments, ensure_ascii=False))


@dataclass
class Parsed:
    content: str
    calls: list[ToolCall]


class ToolParser(ABC):
    """Stateless per answer except for the streaming buffer (one instance per answer)."""

    #: Where calls begin: a marker, or "" for formats that must start the answer.
    start: str = ""

    def __init__(self) -> None:
        self._text = ""
        self._emitted = 0
        self._in_calls = False

    @abstractmethod
    def parse(self, text: str) -> Parsed:
        """Split a whole answer into content and calls (no calls: all content)."""

    @abstractmethod
    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        """A GBNF grammar for one or more calls (of ``forced`` only, when given)."""

    def feed(self, delta: str) -> str:
        """Streaming: content to show now (calls are parsed by ``finish``)."""
        self._text += delta
        if self._in_calls:
            return ""
        begin = self._call_start(self._text)
        if begin is not None:
            self._in_calls = True
            return self._flush(len(self._text[:begin].rstrip()))
        # Trailing whitespace waits too: it is dropped if a call follows it.
        end = len(self._text) - self._held_back(self._text)
        return self._flush(len(self._text[:end].rstrip()))

    def finish(self) -> Parsed:
        """Streaming: the content not yet shown, and every call."""
        parsed = self.parse(self._text)
        if not parsed.calls:
            return Parsed(self._text[self._emitted :], [])
        shown = self._text[: self._emitted]
        rest = parsed.content[len(shown) :] if parsed.content.startswith(shown) else ""
        return Parsed(rest, parsed.calls)

    def _flush(self, end: int) -> str:
        out = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return out

    def _call_start(self, text: str) -> int | None:
        if self.start:
            found = text.find(self.start)
            return None if found < 0 else found
        stripped = text.lstrip()
        if stripped and stripped[0] in self.openers:
            return 0
        return None

    #: For formats without a marker: the characters a call-only answer starts with.
    openers: str = ""

    def _held_back(self, text: str) -> int:
        """How much of the end of ``text`` could still become the start of a call."""
        if not self.start:
            return len(text) if not text.strip() else 0  # Undecided until non-space.
        for size in range(min(len(self.start) - 1, len(text)), 0, -1):
            if self.start.startswith(text[-size:]):
                return size
        return 0


def tool_names(tools: list[dict[str, Any]], forced: str | None) -> list[dict[str, Any]]:
    """The function definitions a grammar may call."""
    functions = [t.get("function", t) for t in tools]
    if forced is not None:
        functions = [f for f in functions if f.get("name") == forced]
    return functions


def arguments_expr(builder: GrammarBuilder, function: dict[str, Any]) -> str:
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    return builder.schema(schema, f"#/tools/{function.get('name')}/parameters")


def json_call_grammar(
    tools: list[dict[str, Any]], forced: str | None, arguments_key: str = "arguments"
) -> tuple[GrammarBuilder, str]:
    """(builder, expression) for one ``{"name": ..., "arguments": {...}}`` object."""
    builder = GrammarBuilder()
    alternatives = []
    for function in tool_names(tools, forced):
        name = builder.literal(function["name"])
        key = builder.literal(arguments_key)
        alternatives.append(
            f'"{{" ws "\\"name\\"" ws ":" ws {name} ws "," ws {key} ws ":" ws '
            f'{arguments_expr(builder, function)} ws "}}"'
        )
    return builder, "( " + " | ".join(alternatives) + " )"
