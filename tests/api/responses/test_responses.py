"""OpenAI's Responses API through the real ``openai`` client against ``llmport serve`` (a
tiny model with a tool template): create, stream, a function tool round trip, stored
responses continued by ``previous_response_id``, GET and DELETE by id."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from dialect_models import TOOL_TEMPLATE, WEATHER_SCHEMA
from server_helpers import Server, running_server
from tiny_model import write_tiny_model

#: A loaded machine may take a while over a model's first load.
post = functools.partial(httpx.post, timeout=60)

TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather",
                     "parameters": WEATHER_SCHEMA}]  # fmt: skip
ASK = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("responses-model")
    return write_tiny_model(folder / "tools.gguf", seed=11, chat_template=TOOL_TEMPLATE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("responses")) as s:
        yield s


def prompt_tokens(server: Server, model: Path, messages: list[Any], tools: Any = None) -> int:
    body = {"model": str(model), "messages": messages, "tools": tools}
    count: int = post(f"{server.base_url}/tokenize", json=body).json()["count"]
    return count


def test_create_answers_like_the_chat_route(server: Server, model: Path) -> None:
    client = server.openai()
    response = client.responses.create(
        model=str(model), input=ASK, instructions="Be brief.", max_output_tokens=12,
        temperature=0,
    )  # fmt: skip
    chat = client.chat.completions.create(
        model=str(model),
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": ASK}],
        max_tokens=12,
        temperature=0,
    )
    assert response.output_text == chat.choices[0].message.content
    assert response.usage is not None and chat.usage is not None
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    cut = chat.choices[0].finish_reason == "length"
    assert response.status == ("incomplete" if cut else "completed")
    assert [item.type for item in response.output] == ["message"]


def test_streamed_events_add_up_to_the_whole(server: Server, model: Path) -> None:
    client = server.openai()
    kwargs: dict[str, Any] = {"model": str(model), "input": ASK, "max_output_tokens": 20,
                              "temperature": 0}  # fmt: skip
    whole = client.responses.create(**kwargs)
    events = list(client.responses.create(stream=True, **kwargs))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", f"response.{whole.status}"]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == whole.output_text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == whole.output_text
    assert final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_function_tool_round_trip_and_continuation(server: Server, model: Path) -> None:
    client = server.openai()
    kwargs: dict[str, Any] = {"model": str(model), "input": ASK, "tools": TOOLS,
                              "tool_choice": "required", "max_output_tokens": 300,
                              "temperature": 0}  # fmt: skip
    first = client.responses.create(**kwargs)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and all(call.name == "get_weather" for call in calls)
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    events = list(client.responses.create(stream=True, **kwargs))
    arguments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    streamed = events[-1].response.output  # type: ignore[union-attr]
    assert "".join(arguments) == "".join(c.arguments for c in calls)
    assert [(i.name, i.arguments) for i in streamed if i.type == "function_call"] == [
        (c.name, c.arguments) for c in calls
    ]
    with client.responses.stream(**kwargs) as stream:  # The SDK's own accumulator.
        final = stream.get_final_response()
    assert [(i.name, i.arguments) for i in final.output if i.type == "function_call"] == [
        (c.name, c.arguments) for c in calls
    ]
    outputs: list[Any] = [
        {"type": "function_call_output", "call_id": c.call_id, "output": "sunny"} for c in calls
    ]
    second = client.responses.create(
        model=str(model), previous_response_id=first.id, input=outputs, tools=TOOLS,
        max_output_tokens=5,
    )  # fmt: skip
    assert second.previous_response_id == first.id
    chat_tools = [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
                  for t in TOOLS]  # fmt: skip
    conversation = [
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": c.call_id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]},
        *({"role": "tool", "tool_call_id": c.call_id, "content": "sunny"} for c in calls),
    ]  # fmt: skip
    assert second.usage is not None
    assert second.usage.input_tokens == prompt_tokens(server, model, conversation, chat_tools)


def test_previous_response_id_continues_the_conversation(server: Server, model: Path) -> None:
    client = server.openai()
    first = client.responses.create(model=str(model), input="Hello", max_output_tokens=6)
    second = client.responses.create(
        model=str(model), previous_response_id=first.id, input="And then?", max_output_tokens=3
    )
    conversation = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And then?"},
    ]
    assert second.usage is not None
    assert second.usage.input_tokens == prompt_tokens(server, model, conversation)
    # A chain of three: the second's stored conversation holds the first's.
    third = client.responses.create(
        model=str(model), previous_response_id=second.id, input="Go on", max_output_tokens=2
    )
    conversation += [{"role": "assistant", "content": second.output_text},
                     {"role": "user", "content": "Go on"}]  # fmt: skip
    assert third.usage is not None
    assert third.usage.input_tokens == prompt_tokens(server, model, conversation)


def test_get_and_delete_by_id(server: Server, model: Path) -> None:
    client = server.openai()
    made = client.responses.create(model=str(model), input="Hi", max_output_tokens=4)
    got = client.responses.retrieve(made.id)
    assert (got.id, got.output_text, got.status) == (made.id, made.output_text, made.status)
    client.responses.delete(made.id)
    for call in (lambda: client.responses.retrieve(made.id),
                 lambda: client.responses.delete(made.id),
                 lambda: client.responses.create(model=str(model), input="x",
                                                 previous_response_id=made.id)):  # fmt: skip
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["code"] == "response_not_found"  # type: ignore[index]
    unstored = client.responses.create(model=str(model), input="Hi", max_output_tokens=2,
                                       store=False)  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_json_schema_text_format_is_enforced(server: Server, model: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}  # fmt: skip
    response = server.openai().responses.create(
        model=str(model), input="A number", max_output_tokens=60,
        text={"format": {"type": "json_schema", "name": "n", "schema": schema}},
    )  # fmt: skip
    jsonschema.validate(json.loads(response.output_text), schema)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": "x"},
        {"model": "MODEL"},
        {"model": "MODEL", "input": []},
        {"model": "MODEL", "input": 5},
        {"model": "MODEL", "input": [{"role": "robot", "content": "x"}]},
        {"model": "MODEL", "input": [{"type": "item_reference", "id": "x"}]},
        {"model": "MODEL", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        {"model": "MODEL", "input": [{"type": "function_call", "name": "f", "arguments": "[]"}]},
        {"model": "MODEL", "input": [{"type": "function_call_output", "output": "x"}]},
        {"model": "MODEL", "input": "x", "tools": [{"type": "web_search"}]},
        {"model": "MODEL", "input": "x", "text": {"format": {"type": "json_schema"}}},
        {"model": "MODEL", "input": "x", "max_output_tokens": 0},
        {"model": "MODEL", "input": "x", "tools": TOOLS,
         "tool_choice": {"type": "function", "name": "nope"}},
        {"model": "MODEL", "input": "x", "previous_response_id": "resp_nope"},
        {"model": "no-such-model", "input": "x"},
    ],
)  # fmt: skip
def test_bad_requests_answer_openai_4xx(server: Server, model: Path, body: dict[str, Any]) -> None:
    body = {k: (str(model) if v == "MODEL" else v) for k, v in body.items()}
    response = post(f"{server.openai_url}/responses", json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
