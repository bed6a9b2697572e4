"""Reasoning returned apart from the answer in every dialect, whole and streamed, on a tiny
model whose answer is always ``ab</think>yes`` (``--reasoning-parser deepseek_r1``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import ollama
import pytest

from dialect_models import ANSWER, REASONING, WEATHER_SCHEMA, write_reasoning_model
from server_helpers import Server, running_server

#: A loaded machine may take a while over a model's first load.
post = functools.partial(httpx.post, timeout=60)

ASK: list[Any] = [{"role": "user", "content": "Is it?"}]
RAW = f"{REASONING}</think>{ANSWER}"
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_reasoning_model(tmp_path_factory.mktemp("think") / "think.gguf"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: str) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("reasoning")
    with running_server(folder, "--reasoning-parser", "deepseek_r1") as s:
        yield s


def test_openai_chat_reasoning_content_whole_and_streamed(server: Server, model: str) -> None:
    client = server.openai()
    whole = client.chat.completions.create(model=model, messages=ASK, max_tokens=20)
    message = whole.choices[0].message
    assert (message.reasoning_content, message.content) == (REASONING, ANSWER)  # type: ignore[attr-defined]
    reasoning, content = "", ""
    for chunk in client.chat.completions.create(
        model=model, messages=ASK, max_tokens=20, stream=True
    ):
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            content += chunk.choices[0].delta.content or ""
    assert (reasoning, content) == (REASONING, ANSWER)


def test_thinking_off_reaches_the_template_and_returns_the_raw_text(
    server: Server, model: str
) -> None:
    client = server.openai()
    on = client.chat.completions.create(model=model, messages=ASK, max_tokens=20)
    off = client.chat.completions.create(
        model=model, messages=ASK, max_tokens=20,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )  # fmt: skip
    assert off.choices[0].message.content == RAW
    assert getattr(off.choices[0].message, "reasoning_content", None) is None
    assert on.usage is not None and off.usage is not None
    assert off.usage.prompt_tokens > on.usage.prompt_tokens  # The template wrote " skip".


def test_tool_calls_and_schemas_apply_after_the_reasoning(server: Server, model: str) -> None:
    client = server.openai()
    kwargs: dict[str, Any] = {"model": model, "messages": ASK, "tools": TOOLS,
                              "tool_choice": "required", "max_tokens": 200,
                              "temperature": 0}  # fmt: skip
    whole = client.chat.completions.create(**kwargs)
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "tool_calls"
    assert message.reasoning_content == REASONING  # type: ignore[attr-defined]
    calls = message.tool_calls or []
    assert calls and all(c.function.name == "get_weather" for c in calls)  # type: ignore[union-attr]
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)  # type: ignore[union-attr]
    reasoning, arguments = "", ""
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            for delta in chunk.choices[0].delta.tool_calls or []:
                arguments += (delta.function.arguments or "") if delta.function else ""
    assert reasoning == REASONING
    assert arguments == "".join(c.function.arguments for c in calls)  # type: ignore[union-attr]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    shaped = client.chat.completions.create(
        model=model, messages=ASK, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )  # fmt: skip
    assert shaped.choices[0].message.reasoning_content == REASONING  # type: ignore[attr-defined]
    jsonschema.validate(json.loads(shaped.choices[0].message.content or ""), schema)


def test_responses_reasoning_items_whole_and_streamed(server: Server, model: str) -> None:
    client = server.openai()
    whole = client.responses.create(model=model, input="Is it?", max_output_tokens=20)
    assert [item.type for item in whole.output] == ["reasoning", "message"]
    assert whole.output[0].content[0].text == REASONING  # type: ignore[union-attr,index]
    assert whole.output_text == ANSWER
    events = list(
        client.responses.create(model=model, input="Is it?", max_output_tokens=20, stream=True)
    )
    deltas = [e.delta for e in events if e.type == "response.reasoning_text.delta"]
    assert "".join(deltas) == REASONING
    text = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(text) == ANSWER
    final = events[-1].response  # type: ignore[union-attr]
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_anthropic_thinking_blocks_whole_and_streamed(server: Server, model: str) -> None:
    with anthropic.Anthropic(base_url=server.base_url, api_key="unused") as client:
        whole = client.messages.create(model=model, max_tokens=20, messages=ASK)
        assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None))
                for b in whole.content] == [("thinking", REASONING), ("text", ANSWER)]  # fmt: skip
        with client.messages.stream(model=model, max_tokens=20, messages=ASK) as stream:
            thinking = "".join(
                e.delta.thinking for e in stream
                if e.type == "content_block_delta" and e.delta.type == "thinking_delta"
            )  # fmt: skip
            final = stream.get_final_message()
        assert thinking == REASONING
        assert [b.type for b in final.content] == ["thinking", "text"]
        off = client.messages.create(
            model=model, max_tokens=20, messages=ASK, thinking={"type": "disabled"}
        )
        assert [(b.type, getattr(b, "text", None)) for b in off.content] == [("text", RAW)]


def test_ollama_think_whole_and_streamed(server: Server, model: str) -> None:
    with ollama.Client(host=server.base_url) as client:
        whole = client.chat(model=model, messages=ASK, think=True)
        assert (whole.message.thinking, whole.message.content) == (REASONING, ANSWER)
        thinking, content = "", ""
        for part in client.chat(model=model, messages=ASK, think="high", stream=True):
            thinking += part.message.thinking or ""
            content += part.message.content or ""
        assert (thinking, content) == (REASONING, ANSWER)
        off = client.chat(model=model, messages=ASK, think=False)
        assert (off.message.thinking, off.message.content) == (None, RAW)
        generated = client.generate(model=model, prompt="Is it?", think=True)
        assert (generated.thinking, generated.response) == (REASONING, ANSWER)
        bad = post(f"{server.base_url}/api/chat",
                         json={"model": model, "messages": ASK, "think": "extreme"})  # fmt: skip
        assert bad.status_code == 400 and "think" in bad.json()["error"]
