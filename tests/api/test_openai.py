"""The real ``openai`` client against ``llmport serve`` on 127.0.0.1: two models, one port."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from llmport.llm import LLM
from llmport.types import SamplingParams
from server_helpers import Server, running_server

GREEDY = {"temperature": 0, "max_tokens": 12, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_paths: list[Path]) -> Server:
    with running_server(tmp_path_factory.mktemp("openai")) as server:
        yield server  # type: ignore[misc]


def expected_text(path: Path, prompt: str, max_tokens: int = 12) -> str:
    with LLM(path, max_model_len=4096) as llm:
        params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
        return llm.generate([prompt], params)[0].outputs[0].text


def test_completions_on_two_models_interleaved_match_the_engine(
    server: Server, model_paths: list[Path]
) -> None:
    client = server.openai("unused")
    first, second = (str(p) for p in model_paths[:2])
    prompt = "The quick brown fox"
    want = {str(path): expected_text(path, prompt) for path in model_paths[:2]}
    assert want[first] != want[second]  # Otherwise the test could not tell models apart.
    for model in (first, second, first, second):
        result = client.completions.create(model=model, prompt=prompt, **GREEDY)
        assert result.choices[0].text == want[model]
        assert result.choices[0].finish_reason == "length"
        assert result.usage is not None and result.usage.completion_tokens == 12
        assert result.model == model
        stream = client.completions.create(model=model, prompt=prompt, stream=True, **GREEDY)
        assert "".join(c.choices[0].text for c in stream if c.choices) == want[model]


def test_chat_streaming_and_not_agree_with_usage(server: Server, model_paths: list[Path]) -> None:
    client = server.openai("unused")
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something."},
    ]
    for path in model_paths[:2]:
        whole = client.chat.completions.create(model=str(path), messages=messages, **GREEDY)
        assert whole.object == "chat.completion"
        assert whole.choices[0].message.role == "assistant"
        text = whole.choices[0].message.content
        assert text
        chunks = list(
            client.chat.completions.create(
                model=str(path),
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **GREEDY,
            )
        )
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-2].choices[0].finish_reason == "length"
        usage = chunks[-1].usage
        assert usage is not None and whole.usage is not None
        assert usage.completion_tokens == 12
        assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_32_concurrent_streams_over_two_models_all_complete(
    server: Server, model_paths: list[Path]
) -> None:
    async def one(client: openai.AsyncOpenAI, index: int) -> tuple[str, str | None]:
        model = str(model_paths[index % 2])
        stream = await client.completions.create(
            model=model,
            prompt=f"client {index} says",
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        text, reason, tokens = "", None, 0
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].text
                reason = chunk.choices[0].finish_reason or reason
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        assert tokens == 16
        return text, reason

    async def main() -> list[tuple[str, str | None]]:
        async with openai.AsyncOpenAI(base_url=server.openai_url, api_key="x") as client:
            return await asyncio.gather(*(one(client, i) for i in range(32)))

    results = asyncio.run(main())
    assert [reason for _, reason in results] == ["length"] * 32


def test_models_lists_loaded_models_and_the_default(
    server: Server, model_paths: list[Path]
) -> None:
    client = server.openai("unused")
    client.completions.create(model=str(model_paths[0]), prompt="hi", max_tokens=1)
    listed = {m.id: m for m in client.models.list()}
    assert "gemma3:270m" in listed
    assert str(model_paths[0]) in listed


def test_models_retrieve_answers_each_listed_name_and_404_otherwise(
    server: Server, model_paths: list[Path]
) -> None:
    client = server.openai("unused")
    client.completions.create(model=str(model_paths[1]), prompt="hi", max_tokens=1)
    for name in ("gemma3:270m", str(model_paths[1])):
        card = client.models.retrieve(name)
        assert card.id == name and card.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model:latest")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_tokenize_and_detokenize_round_trip(server: Server, model_paths: list[Path]) -> None:
    import httpx

    model = str(model_paths[0])
    tokens = httpx.post(f"{server.base_url}/tokenize", json={"model": model, "prompt": "hello"})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["count"] == len(body["tokens"]) and body["max_model_len"] == 4096
    back = httpx.post(
        f"{server.base_url}/detokenize", json={"model": model, "tokens": body["tokens"][1:]}
    )
    assert back.json() == {"prompt": "hello"}


def test_embeddings_through_the_openai_client(server: Server, model_paths: list[Path]) -> None:
    client = server.openai("unused")
    model = str(model_paths[0])
    # The client asks for base64 by default and decodes it; float is asked explicitly.
    packed = client.embeddings.create(model=model, input=["a cat", "a dog", "a cat"])
    plain = client.embeddings.create(model=model, input="a cat", encoding_format="float")
    vectors = [np.array(item.embedding) for item in packed.data]
    assert [item.index for item in packed.data] == [0, 1, 2]
    assert all(v.shape == (64,) and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    # Batch composition and prefix reuse move float sums by ~1e-4.
    assert np.allclose(vectors[0], vectors[2], atol=1e-3)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-2)
    assert np.allclose(plain.data[0].embedding, vectors[0], atol=1e-3)
    assert packed.usage.prompt_tokens == 3 * plain.usage.prompt_tokens


def test_structured_outputs_follow_the_schema(server: Server, model_paths: list[Path]) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        },
        "required": ["name", "age"],
    }
    client = server.openai()
    for stream in (False, True):
        kwargs = {
            "model": str(model_paths[0]),
            "messages": [{"role": "user", "content": "Describe a person as JSON."}],
            "max_tokens": 400,
            "temperature": 0.7,
            "seed": 3,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": schema},
            },
        }
        if stream:
            chunks = client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
            text = reply.choices[0].message.content
        jsonschema.validate(json.loads(text), schema)
    reply = client.completions.create(
        model=str(model_paths[1]), prompt="{", max_tokens=300, temperature=0,
        extra_body={"response_format": {"type": "json_object"}},
    )  # fmt: skip
    # Any JSON object may outrun the budget on a random model; stopped, it parses.
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].text), dict)
    else:
        assert reply.choices[0].text.startswith("{")


def prefill_tokens(server: Server, model: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("llmport_prefill_tokens_total")]
    return sum(float(ln.split()[-1]) for ln in lines if f'model="{model}"' in ln)


def test_n_choices_prefill_the_prompt_once(server: Server, model_paths: list[Path]) -> None:
    model = str(model_paths[2])
    prompt = [(11 * i) % 250 for i in range(500)]
    before = prefill_tokens(server, model)
    result = server.openai().completions.create(
        model=model, prompt=prompt, n=4, max_tokens=4, temperature=0.9, seed=5
    )
    assert len(result.choices) == 4
    assert result.usage is not None and result.usage.prompt_tokens == 500
    assert prefill_tokens(server, model) - before == 500 + 3  # Not 4 x 500.
