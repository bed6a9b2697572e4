"""Llama 3.x JSON calls: ``{"name": ..., "parameters": {...}}``, several joined by ``;``,
maybe after ``<|python_tag|>``; the answer must start with the call."""

from __future__ import annotations

from typing import Any

from llmport.chat.tools.base import ToolParser, json_call_grammar


class Llama3JsonParser(ToolParser):
    openers = "{<"

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder, call = json_call_grammar(tools, forced, arguments_key="parameters")
        return builder.render(f'{call} ( "; " {call} ){self.repeat()}')
