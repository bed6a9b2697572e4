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

from dialect_models import TOOL_TEMPLATE
from server_helpers import Server, running_server
from tiny_model import write_tiny_model

TEMPLATE = TOOL_TEMPLATE
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 10},
                       "days": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "now", "parameters": {
        "type": "object", "additionalProperties": False}}},
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


@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_tool_calls_false_allows_one_call_whole_and_streamed(
    server: Server, model: Path, parallel: bool
) -> None:
    """The newline between hermes calls is pushed up, so a free grammar writes 8 calls;
    ``parallel_tool_calls: false`` leaves room for one."""
    kwargs: dict[str, Any] = {"model": str(model), "messages": ASK, "tools": TOOLS[1:],
                              "tool_choice": "required", "max_tokens": 1000, "temperature": 0,
                              "logit_bias": {"10": 100},
                              "parallel_tool_calls": parallel}  # fmt: skip
    client = server.openai()
    whole = client.chat.completions.create(**kwargs)
    assert whole.choices[0].finish_reason == "tool_calls"
    assert len(whole.choices[0].message.tool_calls or []) == (8 if parallel else 1)
    indexes = {
        call.index
        for chunk in client.chat.completions.create(stream=True, **kwargs)
        for call in ((chunk.choices[0].delta.tool_calls or []) if chunk.choices else [])
    }
    assert indexes == (set(range(8)) if parallel else {0})


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


def rendered(server: Server, model: str, messages: list[dict[str, Any]], **extra: Any) -> str:
    tokens = httpx.post(
        f"{server.base_url}/tokenize", json={"model": model, "messages": messages, **extra}
    ).json()["tokens"]
    return str(
        httpx.post(f"{server.base_url}/detokenize", json={"model": model, "tokens": tokens}).json()[
            "prompt"
        ]
    )


def test_the_tool_use_template_variant_is_used_when_tools_are_offered(
    server: Server, tmp_path: Path
) -> None:
    model = write_tiny_model(
        tmp_path / "variants.gguf",
        chat_template="PLAIN {{ messages[0].content }}",
        extra_strings={"tokenizer.chat_template.tool_use": "TOOLS {{ messages[0].content }}"},
    )
    assert rendered(server, str(model), ASK).startswith("PLAIN")
    assert rendered(server, str(model), ASK, tools=TOOLS).startswith("TOOLS")


def test_chat_template_flag_and_modelfile_template_override_the_model(
    tmp_path: Path, model: Path
) -> None:
    flag = "FLAG {% for m in messages %}{{ m.content }}{% endfor %}"
    with running_server(tmp_path, str(model), "--served-model-name", "t",
                        "--chat-template", flag) as server:  # fmt: skip
        assert rendered(server, "t", ASK).startswith("FLAG What is")
        client = ollama.Client(host=server.base_url)
        try:
            client.create(
                "mine",
                from_=str(model),
                template="MINE {% for m in messages %}{{ m.content }}{% endfor %}",
            )
        finally:
            client._client.close()
        assert rendered(server, "mine", ASK).startswith("MINE What is")
        assert rendered(server, str(model), ASK).startswith("user: What is")  # Its own.


def test_a_hostile_model_template_is_refused_and_the_server_keeps_serving(
    server: Server, tmp_path: Path, model: Path
) -> None:
    hostile = write_tiny_model(
        tmp_path / "hostile.gguf",
        chat_template="{% for i in range(90000) %}{% for j in range(90000) %}{% endfor %}"
        "{% endfor %}",
    )
    response = httpx.post(
        f"{server.openai_url}/chat/completions",
        json={"model": str(hostile), "messages": ASK, "max_tokens": 2},
        timeout=30,
    )
    assert response.status_code == 400
    assert "longer than" in response.json()["error"]["message"]
    walk = write_tiny_model(
        tmp_path / "walk.gguf", chat_template="{{ messages.__class__.__mro__[1].__subclasses__() }}"
    )
    response = httpx.post(
        f"{server.openai_url}/chat/completions",
        json={"model": str(walk), "messages": ASK, "max_tokens": 2},
    )
    assert response.status_code == 400
    ok = server.openai().chat.completions.create(model=str(model), messages=ASK, max_tokens=2)  # type: ignore[arg-type]
    assert ok.choices[0].finish_reason in {"stop", "length"}
