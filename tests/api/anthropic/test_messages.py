"""Anthropic's Messages API through the real ``anthropic`` client against ``llmport serve``
(a tiny model with a tool template), with ``--api-key`` sent as ``x-api-key``."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from dialect_models import TOOL_TEMPLATE, WEATHER_SCHEMA
from server_helpers import Server, running_server
from tiny_model import write_tiny_model

#: A loaded machine may take a while over a model's first load.
post = functools.partial(httpx.post, timeout=60)
get = functools.partial(httpx.get, timeout=60)

KEY = "sk-test"
TOOLS: list[dict[str, Any]] = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
]
#: The current SDK has no ``temperature`` argument (the API still takes the field).
GREEDY = {"temperature": 0}
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("anthropic-model")
    return write_tiny_model(folder / "tools.gguf", seed=11, chat_template=TOOL_TEMPLATE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("anthropic"), "--api-key", KEY) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key=KEY) as c:
        yield c


def test_create_answers_like_the_openai_route(
    server: Server, client: anthropic.Anthropic, model: Path
) -> None:
    message = client.messages.create(
        model=str(model), max_tokens=12, messages=ASK, system="Be brief.", extra_body=GREEDY
    )
    assert message.role == "assistant" and message.type == "message"
    assert [block.type for block in message.content] == ["text"]
    reply = server.openai(KEY).chat.completions.create(
        model=str(model),
        messages=[{"role": "system", "content": "Be brief."}, *ASK],
        max_tokens=12,
        temperature=0,
    )
    assert message.content[0].text == reply.choices[0].message.content  # type: ignore[union-attr]
    assert message.usage.input_tokens == reply.usage.prompt_tokens  # type: ignore[union-attr]
    assert message.usage.output_tokens == reply.usage.completion_tokens  # type: ignore[union-attr]
    expected = {"length": "max_tokens", "stop": "end_turn"}[reply.choices[0].finish_reason]
    assert message.stop_reason == expected


def test_streamed_text_adds_up_to_the_whole(client: anthropic.Anthropic, model: Path) -> None:
    kwargs: dict[str, Any] = {"model": str(model), "max_tokens": 20, "messages": ASK,
                              "extra_body": GREEDY}  # fmt: skip
    whole = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == whole.content[0].text  # type: ignore[union-attr]
    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_a_stop_sequence_ends_the_answer_and_is_reported(
    client: anthropic.Anthropic, model: Path
) -> None:
    kwargs: dict[str, Any] = {"model": str(model), "max_tokens": 20, "messages": ASK,
                              "extra_body": GREEDY}  # fmt: skip
    text = client.messages.create(**kwargs).content[0].text  # type: ignore[union-attr]
    stop = text[6:9]
    cut = text[: text.index(stop)]
    whole = client.messages.create(stop_sequences=[stop, "never-seen"], **kwargs)
    assert whole.content[0].text == cut  # type: ignore[union-attr]
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", stop)
    with client.messages.stream(stop_sequences=[stop], **kwargs) as stream:
        assert "".join(stream.text_stream) == cut
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", stop)


def test_tool_use_round_trip_whole_and_streamed(
    server: Server, client: anthropic.Anthropic, model: Path
) -> None:
    kwargs: dict[str, Any] = {"model": str(model), "max_tokens": 300, "messages": ASK,
                              "tools": TOOLS, "tool_choice": {"type": "any"},
                              "extra_body": GREEDY}  # fmt: skip
    whole = client.messages.create(**kwargs)
    assert whole.stop_reason == "tool_use"
    uses = [block for block in whole.content if block.type == "tool_use"]
    assert uses and all(use.name == "get_weather" for use in uses)
    for use in uses:
        jsonschema.validate(use.input, WEATHER_SCHEMA)
    with client.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        (u.name, u.input) for u in uses
    ]
    # The results go back as tool_result blocks; the template sees OpenAI's tool messages.
    follow_up: list[Any] = [
        *ASK,
        {"role": "assistant", "content": [u.model_dump() for u in uses]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses]},
    ]  # fmt: skip
    reply = client.messages.create(
        model=str(model),
        max_tokens=5,
        messages=follow_up,
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert reply.stop_reason in {"end_turn", "max_tokens", "tool_use"}
    counted = client.messages.count_tokens(model=str(model), messages=follow_up, tools=TOOLS)  # type: ignore[arg-type]
    openai_messages = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": u.id, "type": "function",
             "function": {"name": u.name, "arguments": json.dumps(u.input)}} for u in uses]},
        *({"role": "tool", "tool_call_id": u.id, "content": "sunny"} for u in uses),
    ]  # fmt: skip
    openai_tools = [
        {"type": "function", "function": {"name": t["name"], "description": t["description"],
                                          "parameters": t["input_schema"]}}
        for t in TOOLS
    ]  # fmt: skip
    tokenized = post(
        f"{server.base_url}/tokenize",
        json={"model": str(model), "messages": openai_messages, "tools": openai_tools},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    assert counted.input_tokens == tokenized["count"]
    text = post(
        f"{server.base_url}/detokenize",
        json={"model": str(model), "tokens": tokenized["tokens"]},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()["prompt"]
    assert f"<tool_response id={uses[0].id}>sunny</tool_response>" in text


def test_disable_parallel_tool_use_gives_one_call(client: anthropic.Anthropic, model: Path) -> None:
    message = client.messages.create(
        model=str(model),
        max_tokens=400,
        messages=ASK,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    assert [b.type for b in message.content] == ["tool_use"]


def test_count_tokens_matches_the_prompt_the_model_sees(
    client: anthropic.Anthropic, model: Path
) -> None:
    counted = client.messages.count_tokens(model=str(model), messages=ASK, system="Be brief.")
    message = client.messages.create(
        model=str(model), max_tokens=1, messages=ASK, system="Be brief."
    )
    assert counted.input_tokens == message.usage.input_tokens > 5


def test_errors_have_anthropics_shape(
    server: Server, client: anthropic.Anthropic, model: Path
) -> None:
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="no-such-model", max_tokens=4, messages=ASK)
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    bad_bodies: list[Any] = [
        {"model": str(model), "messages": ASK},
        {"model": str(model), "max_tokens": "many", "messages": ASK},
        {"model": str(model), "max_tokens": 4, "messages": []},
        {"model": str(model), "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "data": "AA=="}}]}]},
        {"model": str(model), "max_tokens": 4, "messages": ASK, "temperature": 3},
        {"model": str(model), "max_tokens": 4, "messages": ASK, "tools": TOOLS,
         "tool_choice": {"type": "tool", "name": "nope"}},
        [1, 2],
    ]  # fmt: skip
    for body in bad_bodies:
        response = post(f"{server.base_url}/v1/messages", json=body, headers={"x-api-key": KEY})
        assert response.status_code == 400, (body, response.text)
        error = response.json()
        assert error == {"type": "error", "error": {
            "type": "invalid_request_error", "message": error["error"]["message"]}}  # fmt: skip
        assert error["error"]["message"]
    response = post(
        f"{server.base_url}/v1/messages/count_tokens", content=b"{", headers={"x-api-key": KEY}
    )
    assert response.status_code == 400 and response.json()["type"] == "error"


def test_a_wrong_key_is_401_in_anthropics_shape(server: Server, model: Path) -> None:
    with (
        anthropic.Anthropic(base_url=server.base_url, api_key="wrong") as client,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        client.messages.create(model=str(model), max_tokens=1, messages=ASK)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert get(f"{server.base_url}/v1/models", headers={"x-api-key": KEY}).status_code == 200
