"""Hermes (Qwen, NousResearch): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``."""

from __future__ import annotations

import json
import re
from typing import Any

from llmport.chat.tools.base import Parsed, ToolCall, ToolParser, json_call_grammar

_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


class HermesParser(ToolParser):
    start = "<tool_call>"

    def parse(self, text: str) -> Parsed:
        calls = []
        for body in _CALL.findall(text):
            try:
                data = json.loads(body)
            except ValueError:
                continue
            call = (
                ToolCall.of(data.get("name"), data.get("arguments"))
                if isinstance(data, dict)
                else None
            )
            if call is not None:
                calls.append(call)
        if not calls:
            return Parsed(text, [])
        return Parsed(text[: text.find(self.start)].rstrip(), calls)

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder, call = json_call_grammar(tools, forced)
        one = f'"<tool_call>\\n" {call} "\\n</tool_call>"'
        return builder.render(f'{one} ( "\\n" {one} ){{0,7}}')
