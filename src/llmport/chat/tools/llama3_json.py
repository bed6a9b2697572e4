"""Llama 3.x JSON calls: ``{"name": ..., "parameters": {...}}``, several joined by ``;``,
maybe after ``<|python_tag|>``; the answer must start with the call."""

from __future__ import annotations

import json
from typing import Any

from llmport.chat.tools.base import Parsed, ToolCall, ToolParser, json_call_grammar

PYTHON_TAG = "<|python_tag|>"


class Llama3JsonParser(ToolParser):
    openers = "{<"

    def parse(self, text: str) -> Parsed:
        body = text.strip().removeprefix(PYTHON_TAG).strip()
        if not body.startswith("{"):
            return Parsed(text, [])
        calls = []
        decoder = json.JSONDecoder()
        position = 0
        while position < len(body):
            try:
                data, end = decoder.raw_decode(body, position)
            except ValueError:
                return Parsed(text, [])
            if not isinstance(data, dict):
                return Parsed(text, [])
            call = ToolCall.of(data.get("name"), data.get("parameters", data.get("arguments")))
            if call is None:
                return Parsed(text, [])
            calls.append(call)
            position = end
            while position < len(body) and body[position] in " \n\t;":
                position += 1
        return Parsed("", calls)

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder, call = json_call_grammar(tools, forced, arguments_key="parameters")
        return builder.render(f'{call} ( "; " {call} ){{0,7}}')
