"""Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``."""

from __future__ import annotations

from typing import Any

from llmport.chat.tools.base import ToolParser, json_call_grammar

MARKER = "[TOOL_CALLS]"


class MistralParser(ToolParser):
    start = MARKER

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder, call = json_call_grammar(tools, forced)
        return builder.render(f'"{MARKER}[" {call} ( "," ws {call} ){self.repeat()} "]"')
