"""Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``."""

from __future__ import annotations

import json
from typing import Any

from llmport.chat.tools.base import Parsed, ToolCall, ToolParser, json_call_grammar

MARKER = "[TOOL_CALLS]"


class MistralParser(ToolParser):
    start = MARKER

    def parse(self, text: str) -> Parsed:
        begin = text.find(MARKER)
        if begin < 0:
            return Parsed(text, [])
        try:
            data, _ = json.JSONDecoder().raw_decode(text[begin + len(MARKER) :].lstrip())
        except ValueError:
            return Parsed(text, [])
        items = data if isinstance(data, list) else [data]
        calls = [
            ToolCall.of(item.get("name"), item.get("arguments"))
            for item in items
            if isinstance(item, dict)
        ]
        if not calls or None in calls:
            return Parsed(text, [])
        return Parsed(text[:begin].rstrip(), [c for c in calls if c is not None])

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder, call = json_call_grammar(tools, forced)
        return builder.render(f'"{MARKER}[" {call} ( "," ws {call} ){{0,7}} "]"')
