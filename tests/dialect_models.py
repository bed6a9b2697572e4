"""Tiny models for the newer dialects' tests (Anthropic, Responses, reasoning): the tool
template of test_tools, and one whose answers always start with a ``<think>`` block."""

from __future__ import annotations

from typing import Any

TOOL_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}"
    "{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
    "{% elif m.role == 'tool' %}<tool_response id={{ m.tool_call_id }}>{{ m.content }}"
    "</tool_response>"
    "{% else %}{{ m.role }}: {{ m.content }}{% endif %}\n{% endfor %}"
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10},
                   "days": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["city"],
}  # fmt: skip
