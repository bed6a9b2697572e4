"""What every tool-call parser gives: the text around the calls, and the calls.

A parser knows where its format's calls start (``start``). While streaming, text is
passed through as content until that start appears (a possible partial start and
trailing whitespace are held back); from there on calls stream as they are written.
Arguments are the model's own JSON text, so a streamed answer yields exactly the
calls a whole one does.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from llmport.chat.structured import GrammarBuilder
from llmport.chat.tools.json_stream import JsonCallStream, ToolDelta

#: Most calls one answer may hold (a forced call's grammar repeats at most this often).
MAX_NUM_CALLS = 8


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
    """One instance per answer (it keeps the streaming state).

    JSON formats (``incremental``) stream each call as it is written: its id and name
    once the name is whole, then its arguments text as it arrives. Other formats emit
    their calls when the answer ends.
    """

    #: Where calls begin: a marker, or "" for formats that must start the answer.
    start: str = ""
    #: For formats without a marker: the characters a call-only answer starts with.
    openers: str = ""
    incremental: bool = True

    def __init__(self, max_num_calls: int = MAX_NUM_CALLS) -> None:
        #: ``parallel_tool_calls: false`` makes it 1: grammars allow one call, and the
        #: parser keeps only the first of an unconstrained answer's calls.
        self.max_num_calls = max_num_calls
        self._text = ""
        self._emitted = 0
        self._begin: int | None = None
        self._stream = JsonCallStream()
        self._deltas: list[ToolDelta] = []

    def parse(self, text: str) -> Parsed:
        """Split a whole answer into content and calls (no calls: all content)."""
        begin = self._call_start(text)
        if begin is None:
            return Parsed(text, [])
        stream = JsonCallStream()
        stream.update(text[begin:])
        calls = _valid_calls(stream, text[begin:])
        if not calls:
            return Parsed(text, [])
        return Parsed(text[:begin].rstrip(), calls[: self.max_num_calls])

    @abstractmethod
    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        """A GBNF grammar for one or more calls (of ``forced`` only, when given)."""

    # -- streaming ----------------------------------------------------------------------

    def feed(self, delta: str) -> str:
        """Content to show now; call pieces wait in ``take_deltas``."""
        self._text += delta
        if self._begin is None:
            begin = self._call_start(self._text)
            if begin is None:
                # Trailing whitespace waits too: it is dropped if a call follows it.
                end = len(self._text) - self._held_back(self._text)
                return self._flush(len(self._text[:end].rstrip()))
            self._begin = begin
            content = self._flush(len(self._text[:begin].rstrip()))
        else:
            content = ""
        if self.incremental:
            self._deltas += self._stream.update(self._text[self._begin :])
        return content

    def take_deltas(self) -> list[ToolDelta]:
        deltas, self._deltas = self._deltas, []
        return [d for d in deltas if d.index < self.max_num_calls]

    def repeat(self) -> str:
        """The GBNF bound for the calls after the first: ``{0,N-1}``."""
        return f"{{0,{self.max_num_calls - 1}}}"

    def finish(self) -> Parsed:
        """The content not yet shown and every call; the last pieces go to ``take_deltas``."""
        if self._begin is None:
            return Parsed(self._text[self._emitted :], [])
        if not self.incremental:
            parsed = self.parse(self._text)
            self._deltas += [d for i, c in enumerate(parsed.calls) for d in _whole(i, c)]
            rest = "" if parsed.calls else self._text[self._emitted :]
            return Parsed(rest, parsed.calls)
        region = self._text[self._begin :]
        self._deltas += self._stream.update(region)
        calls = _valid_calls(self._stream, region)
        return Parsed("" if calls else self._text[self._emitted :], calls[: self.max_num_calls])

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
            return len(text) - len(stripped)
        return None

    def _held_back(self, text: str) -> int:
        """How much of the end of ``text`` could still become the start of a call."""
        if not self.start:
            return len(text) if not text.strip() else 0  # Undecided until non-space.
        for size in range(min(len(self.start) - 1, len(text)), 0, -1):
            if self.start.startswith(text[-size:]):
                return size
        return 0


def _valid_calls(stream: JsonCallStream, region: str) -> list[ToolCall]:
    calls = []
    for call in stream.calls:
        arguments = stream.arguments(region, call)
        if arguments is not None:
            calls.append(ToolCall(call.name, arguments, call.id))
    return calls


def _whole(index: int, call: ToolCall) -> list[ToolDelta]:
    return [ToolDelta(index, id=call.id, name=call.name), ToolDelta(index, call.arguments)]


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
