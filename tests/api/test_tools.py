"""Tool calling through the real openai and ollama clients (tiny model, its own template)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import pytest

from server_helpers import Server, running_server
from tiny_model import write_tiny_model

TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}"
    "{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
    "{% elif m.role == 'tool' %}<tool_response id={{ m.tool_call_id }}>{{ m.content }}"
    "</tool_response>"
    "{% else %}{{ m.role }}: {{ m.content }}{% endif %}\n{% endfor %}"
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 10},
                       "days": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
]  # fmt: skip
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tool-model")
    return write_tiny_model(folder / "tools.gguf", seed=11, chat_template=TEMPLATE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("tools"), "--tool-call-parser", "hermes") as s:
        yield s


def check_calls(calls: list[Any], forced: str | None = None) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    assert calls
    for call in calls:
        assert call.type == "function" and call.id
        assert forced is None or call.function.name == forced
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "now"}}])
def test_forced_tool_calls_parse_whole_and_streamed(
    server: Server, model: Path, choice: Any
) -> None:
    client = server.openai()
    forced = choice["function"]["name"] if isinstance(choice, dict) else None
    kwargs: dict[str, Any] = {"model": str(model), "messages": ASK, "tools": TOOLS,
                              "tool_choice": choice, "max_tokens": 300,
                              "temperature": 0}  # fmt: skip
    whole = client.chat.completions.create(seed=1, **kwargs)
    assert whole.choices[0].finish_reason == "tool_calls"
    check_calls(whole.choices[0].message.tool_calls or [], forced)

    chunks = list(client.chat.completions.create(seed=1, stream=True, **kwargs))
    pieces: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            piece = pieces.setdefault(delta.index, {"name": "", "arguments": ""})
            piece["name"] += (delta.function.name or "") if delta.function else ""
            piece["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    streamed = [(p["name"], json.loads(p["arguments"])) for _, p in sorted(pieces.items())]
    assert streamed == [
        (c.function.name, json.loads(c.function.arguments))
        for c in whole.choices[0].message.tool_calls or []
    ]


def test_tool_results_round_trip_through_the_template(server: Server, model: Path) -> None:
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]  # fmt: skip
    rendered = httpx.post(
        f"{server.base_url}/tokenize",
        json={"model": str(model), "messages": messages, "tools": TOOLS},
    ).json()["tokens"]
    text = httpx.post(
        f"{server.base_url}/detokenize", json={"model": str(model), "tokens": rendered}
    ).json()["prompt"]
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in text
    assert "<tool_response id=call_1>sunny, 21C</tool_response>" in text
    reply = server.openai().chat.completions.create(
        model=str(model),
        messages=messages,
        tools=TOOLS,
        max_tokens=5,  # type: ignore[arg-type]
    )
    assert reply.choices[0].finish_reason in {"stop", "length", "tool_calls"}


def test_tool_choice_naming_an_unknown_function_is_400(server: Server, model: Path) -> None:
    response = httpx.post(
        f"{server.openai_url}/chat/completions",
        json={"model": str(model), "messages": ASK, "tools": TOOLS,
              "tool_choice": {"type": "function", "function": {"name": "nope"}}},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tool_choice"


def test_ollama_chat_with_tools_answers(server: Server, model: Path) -> None:
    client = ollama.Client(host=server.base_url)
    try:
        reply = client.chat(str(model), messages=ASK, tools=TOOLS, options={"num_predict": 8})
        assert reply.done
        streamed = list(client.chat(str(model), messages=ASK, tools=TOOLS, stream=True,
                                    options={"num_predict": 8}))  # fmt: skip
        assert streamed[-1].done
    finally:
        client._client.close()
