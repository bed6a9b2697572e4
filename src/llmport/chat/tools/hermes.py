"""Hermes (Qwen, NousResearch): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""

from __future__ import annotations

from typing import Any

from llmport.chat.tools.base import ToolParser, json_call_grammar


class HermesParser(ToolParser):
    start = "<tool_call>"

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder, call = json_call_grammar(tools, forced)
        one = f'"<tool_call>\\n" {call} "\\n</tool_call>"'
        return builder.render(f'{one} ( "\\n" {one} ){self.repeat()}')
