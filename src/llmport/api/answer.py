"""One chat answer's text split into what every dialect returns apart: the reasoning (a
reasoning parser), the content, and the tool calls (a tool-call parser), whole or as
pieces while it streams. The dialects differ only in how they wrap these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmport.api.state import AppState
from llmport.chat.reasoning import ReasoningParser, parser_for_template, reasoning_parser
from llmport.chat.reasoning.grammar import after_reasoning
from llmport.chat.tools import ToolCall, ToolParser
from llmport.chat.tools.json_stream import ToolDelta
from llmport.models.spec import ModelSpec


@dataclass
class Piece:
    """What is new since the last piece (``calls`` are whole: only in the final piece)."""

    reasoning: str = ""
    content: str = ""
    tool_deltas: list[ToolDelta] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)


@dataclass
class Answer:
    reasoning: str
    content: str
    calls: list[ToolCall]


class AnswerParser:
    """One per answer. The reasoning comes first; tool calls are read from the rest."""

    def __init__(self, reasoning: ReasoningParser | None, tools: ToolParser | None) -> None:
        self.reasoning = reasoning
        self.tools = tools

    def parse(self, text: str) -> Answer:
        reasoning, content = "", text
        if self.reasoning is not None:
            reasoning, content = self.reasoning.parse(text)
        if self.tools is None:
            return Answer(reasoning, content, [])
        parsed = self.tools.parse(content)
        return Answer(reasoning, parsed.content, parsed.calls)

    def feed(self, text: str) -> Piece:
        reasoning, content = "", text
        if self.reasoning is not None:
            reasoning, content = self.reasoning.feed(text)
        return self._content(Piece(reasoning), content)

    def finish(self) -> Piece:
        piece = Piece()
        content = ""
        if self.reasoning is not None:
            piece.reasoning, content = self.reasoning.finish()
        piece = self._content(piece, content)
        if self.tools is not None:
            final = self.tools.finish()
            piece.content += final.content
            piece.calls = final.calls
            piece.tool_deltas += self.tools.take_deltas()
        return piece

    def _content(self, piece: Piece, content: str) -> Piece:
        if self.tools is None:
            piece.content = content
        elif content:
            piece.content = self.tools.feed(content)
            piece.tool_deltas = self.tools.take_deltas()
        return piece


def reasoning_parser_name(state: AppState, spec: ModelSpec, think: bool | None) -> str | None:
    """The reasoning parser for a request: none when the client turned thinking off, else
    ``--reasoning-parser``, else the one the model's template implies (if unambiguous)."""
    if think is False:
        return None
    if state.reasoning_parser is not None:
        return state.reasoning_parser
    return parser_for_template(state.chat_template(spec) or spec.chat_template)


def answer_parser(reasoning: str | None, tools: ToolParser | None) -> AnswerParser:
    return AnswerParser(None if reasoning is None else reasoning_parser(reasoning), tools)


def reasoning_first(grammar: str | None, reasoning: str | None) -> str | None:
    """A constrained answer's grammar, behind the reasoning block when the model reasons."""
    if grammar is None or reasoning is None:
        return grammar
    return after_reasoning(grammar, reasoning_parser(reasoning))


def template_kwargs(think: bool | None, effort: str | None = None) -> dict[str, Any]:
    """What templates that can think take: ``enable_thinking`` (Qwen3, DeepSeek) and
    ``reasoning_effort`` (gpt-oss), when the client chose."""
    kwargs: dict[str, Any] = {}
    if think is not None:
        kwargs["enable_thinking"] = think
    if effort is not None:
        kwargs["reasoning_effort"] = effort
    return kwargs
