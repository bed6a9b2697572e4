"""Each parser turns its format into the exact calls, whole or streamed in any pieces, and
its grammar makes even a random model write calls that parse."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llmport.chat.tools import PARSERS, tool_parser
from llmport.chat.tools.base import Parsed
from llmport.chat.tools.json_stream import ToolDelta
from llmport.config import EngineConfig
from llmport.engines.batching.core import EngineCore
from llmport.engines.llama_cpp.backend import LlamaCppBackend
from llmport.types import Request, SamplingParams

WEATHER = {"city": "Paris", "days": 3, "units": None, "alerts": True, "tags": ["a", "é"]}
TIME: dict[str, Any] = {}
MODEL_TEXT = {
    "hermes": (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
        + json.dumps(WEATHER)
        + '}\n</tool_call>\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'
    ),
    "llama3_json": (
        '<|python_tag|>{"name": "get_weather", "parameters": '
        + json.dumps(WEATHER)
        + '}; {"name": "now", "parameters": {}}'
    ),
    "mistral": (
        "Let me check.[TOOL_CALLS]"
        + json.dumps(
            [{"name": "get_weather", "arguments": WEATHER}, {"name": "now", "arguments": {}}]
        )
    ),
    "pythonic": (
        '[get_weather(city="Paris", days=3, units=None, alerts=True, tags=["a", "é"]), now()]'
    ),
}
CONTENT = {"hermes": "Let me check.", "llama3_json": "", "mistral": "Let me check.",
           "pythonic": ""}  # fmt: skip
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "alerts": {"type": "boolean"},
        },
        "required": ["city", "days"]}}},
    {"type": "function", "function": {"name": "now", "parameters": {
        "type": "object", "properties": {}, "additionalProperties": False}}},
]  # fmt: skip


def expected_calls() -> list[tuple[str, dict[str, Any]]]:
    return [("get_weather", WEATHER), ("now", TIME)]


def as_pairs(parsed: Parsed) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, json.loads(c.arguments)) for c in parsed.calls]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_whole_answers_parse_into_the_exact_calls(name: str) -> None:
    parsed = tool_parser(name).parse(MODEL_TEXT[name])
    assert parsed.content == CONTENT[name]
    assert as_pairs(parsed) == expected_calls()
    assert all(c.id.startswith("call_") for c in parsed.calls)


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("seed", range(5))
def test_streamed_answers_give_the_same_calls_in_any_pieces(name: str, seed: int) -> None:
    rng = random.Random(seed)
    text = MODEL_TEXT[name]
    parser = tool_parser(name)
    shown, position = "", 0
    deltas: list[ToolDelta] = []
    while position < len(text):
        size = rng.randint(1, 7)
        shown += parser.feed(text[position : position + size])
        position += size
        deltas += parser.take_deltas()
    final = parser.finish()
    deltas += parser.take_deltas()
    assert shown + final.content == CONTENT[name]
    assert "<tool" not in shown and "[TOOL" not in shown
    assert as_pairs(final) == expected_calls()
    # The deltas add up to the calls: id and name first, then the arguments' text.
    streamed: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = streamed.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        assert delta.name is None or not call["name"]  # The name comes once...
        assert call["name"] or delta.name  # ...and before any arguments.
        call["id"] += delta.id or ""
        call["name"] += delta.name or ""
        call["arguments"] += delta.arguments
    whole = tool_parser(name).parse(MODEL_TEXT[name]).calls
    assert [(c["name"], c["arguments"]) for c in streamed.values()] == [
        (c.name, c.arguments) for c in whole
    ]
    assert [c["id"] for c in streamed.values()] == [c.id for c in final.calls]
    if tool_parser(name).incremental:  # JSON formats stream arguments as they arrive.
        assert sum(1 for d in deltas if d.index == 0 and d.arguments) > 1


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_plain_answers_are_all_content(name: str) -> None:
    text = "The weather is fine [citation] {maybe} <b>."
    parser = tool_parser(name)
    assert parser.parse(text) == Parsed(text, [])
    shown = "".join(parser.feed(text[i : i + 3]) for i in range(0, len(text), 3))
    assert shown + parser.finish().content == text


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("forced", [None, "get_weather"])
def test_the_grammar_makes_a_random_model_call_tools_that_parse(
    tiny_model_path: Path, name: str, forced: str | None
) -> None:
    grammar = tool_parser(name).call_grammar(TOOLS, forced)
    config = EngineConfig(max_num_seqs=8, max_num_kv_tokens=4096)
    engine = EngineCore(LlamaCppBackend(tiny_model_path, config), config)
    for i in range(8):
        params = SamplingParams(max_tokens=600, grammar=grammar, temperature=1.0, seed=i)
        engine.add_request(Request(request_id=str(i), prompt=f"call {i}", params=params))
    texts: dict[str, str] = {}
    while engine.has_unfinished_requests:
        for output in engine.step():
            texts[output.request_id] = texts.get(output.request_id, "") + output.text
    engine.close()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for text in texts.values():
        parsed = tool_parser(name).parse(text)
        assert parsed.calls, (name, text)
        for call in parsed.calls:
            assert forced is None or call.name == forced
            jsonschema.validate(json.loads(call.arguments), schemas[call.name])


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_one_call_only_keeps_the_first_whole_and_streamed(name: str) -> None:
    parsed = tool_parser(name, parallel=False).parse(MODEL_TEXT[name])
    assert as_pairs(parsed) == expected_calls()[:1]
    parser = tool_parser(name, parallel=False)
    text = MODEL_TEXT[name]
    deltas = []
    for i in range(0, len(text), 5):
        parser.feed(text[i : i + 5])
        deltas += parser.take_deltas()
    final = parser.finish()
    deltas += parser.take_deltas()
    assert as_pairs(final) == expected_calls()[:1]
    assert {d.index for d in deltas} == {0}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_one_call_grammars_repeat_nothing(name: str) -> None:
    assert "{0,7}" in tool_parser(name).call_grammar(TOOLS, None)
    one = tool_parser(name, parallel=False).call_grammar(TOOLS, None)
    assert "{0,0}" in one and "{0,7}" not in one
