"""An HF model (vLLM) and a GGUF model (llama.cpp) on one port, through the real openai
and ollama clients: interleaved, streaming and not, the tokenizer's own chat template,
tools, JSON schemas, the API key and served names."""

from __future__ import annotations

import gc
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import psutil
import pytest
import transformers
from vllm_server import API_KEY, auth

from server_helpers import Server

ASK = [{"role": "user", "content": "hello, what is the weather in Paris?"}]
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
    "required": ["n", "ok"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"],
        "additionalProperties": False}}},
]  # fmt: skip


def chat(client: openai.OpenAI, model: str, stream: bool) -> tuple[str, str | None]:
    """(the answer, its finish reason) from a chat, streamed or not."""
    kwargs: dict[str, Any] = {"model": model, "messages": ASK, "max_tokens": 12}
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        return choice.message.content or "", choice.finish_reason
    text, reason = "", None
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            reason = choice.finish_reason or reason
    return text, reason


def test_hf_and_gguf_answer_through_one_port_interleaved(server: Server) -> None:
    client = server.openai(api_key=API_KEY)
    jobs = [(model, stream) for _ in range(3) for model in ("hf", "gguf") for stream in (0, 1)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: chat(client, job[0], bool(job[1])), jobs))
    for text, reason in answers:
        assert text and reason == "length"
    completion = client.completions.create(model="hf", prompt="hello world", max_tokens=5)
    assert completion.model == "hf" and completion.usage is not None
    assert completion.usage.completion_tokens == 5


def test_ollama_client_chats_with_both_engines(server: Server) -> None:
    with ollama.Client(host=server.base_url, headers=auth()) as client:  # no socket left
        for model in ("hf", "gguf", "hf"):
            whole = client.chat(model=model, messages=ASK, options={"num_predict": 6})
            assert whole.message.content and whole.done_reason == "length"
            parts = list(client.chat(model=model, messages=ASK, stream=True,
                                     options={"num_predict": 6}))  # fmt: skip
            assert parts[-1].done and "".join(p.message.content or "" for p in parts)
            generated = client.generate(model=model, prompt="hello", options={"num_predict": 4})
            assert generated.eval_count == 4


def test_chat_is_rendered_with_the_tokenizers_own_template(server: Server, hf_llama: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_llama)
    expected = tokenizer.apply_chat_template(ASK, add_generation_prompt=True, tokenize=True)
    if isinstance(expected, dict) or hasattr(expected, "input_ids"):
        expected = expected["input_ids"]
    answer = server.openai(api_key=API_KEY).chat.completions.create(
        model="hf",
        messages=ASK,
        max_tokens=1,  # type: ignore[arg-type]
    )
    assert answer.usage is not None and answer.usage.prompt_tokens == len(expected)
    rendered = httpx.post(f"{server.base_url}/tokenize", json={"model": "hf", "messages": ASK},
                          headers=auth())  # fmt: skip
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["tokens"] == list(expected)


def test_the_api_key_and_served_names_guard_the_hf_model(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError):
        server.openai(api_key="wrong").chat.completions.create(
            model="hf",
            messages=ASK,
            max_tokens=2,  # type: ignore[arg-type]
        )
    models = {m.id for m in server.openai(api_key=API_KEY).models.list()}
    assert {"hf", "gguf"} <= models


def test_a_json_schema_answer_validates(server: Server) -> None:
    client = server.openai(api_key=API_KEY)
    answer = client.chat.completions.create(
        model="hf", messages=ASK, max_tokens=60,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
    )  # fmt: skip
    content = answer.choices[0].message.content or ""
    assert answer.choices[0].finish_reason == "stop", content
    jsonschema.validate(json.loads(content), SCHEMA)


def test_a_forced_tool_call_is_parsed(server: Server) -> None:
    client = server.openai(api_key=API_KEY)
    answer = client.chat.completions.create(
        model="hf", messages=ASK, tools=TOOLS, max_tokens=60,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    calls = answer.choices[0].message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(arguments, TOOLS[0]["function"]["parameters"])


def test_what_vllm_cannot_do_is_a_400_naming_it(server: Server) -> None:
    client = server.openai(api_key=API_KEY)
    with pytest.raises(openai.BadRequestError, match="embed"):
        client.embeddings.create(model="hf", input="hello")
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="hf", prompt="hello " * 3000, max_tokens=2)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="hf", max_tokens=2,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}],
        )  # fmt: skip
    assert caught.value.param == "messages[0].content[1].image_url"


def test_a_repeat_window_vllm_cannot_keep_is_a_400_naming_it(server: Server) -> None:
    with ollama.Client(host=server.base_url, headers=auth()) as client:
        with pytest.raises(ollama.ResponseError) as caught:
            client.generate(model="hf", prompt="hi", options={"repeat_last_n": 32})
        assert caught.value.status_code == 400 and "repeat_last_n 32" in caught.value.error
        whole = client.generate(model="hf", prompt="hi", options={"repeat_last_n": -1,
                                                                  "num_predict": 2})  # fmt: skip
        assert whole.eval_count == 2
        assert client.generate(
            model="gguf", prompt="hi", options={"repeat_last_n": 32, "num_predict": 2}
        ).eval_count


def test_sampling_options_reach_vllm(server: Server) -> None:
    client = server.openai(api_key=API_KEY)
    answer = client.completions.create(
        model="hf", prompt="hello", max_tokens=4, n=2, temperature=1.0, seed=7, logprobs=2
    )
    assert sorted(c.index for c in answer.choices) == [0, 1]
    for choice in answer.choices:
        assert choice.logprobs is not None and len(choice.logprobs.token_logprobs or []) == 4
    again = client.completions.create(
        model="hf", prompt="hello", max_tokens=4, n=2, temperature=1.0, seed=7, logprobs=2
    )
    assert [c.text for c in again.choices] == [c.text for c in answer.choices]
    first = client.completions.create(model="hf", prompt="hello", max_tokens=8, temperature=0)
    stop = first.choices[0].text[2:4]
    if stop.strip():
        cut = client.completions.create(
            model="hf", prompt="hello", max_tokens=8, temperature=0, stop=[stop]
        )
        assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].text


def test_ps_and_models_show_engine_device_and_state(server: Server) -> None:
    client = server.openai(api_key=API_KEY)
    chat(client, "hf", stream=False)
    chat(client, "gguf", stream=False)
    loaded = httpx.get(f"{server.base_url}/api/ps", headers=auth()).json()["models"]
    shown = {m["name"]: (m["engine"], m["device"], m["state"]) for m in loaded}
    assert shown == {"hf": ("vllm", "cpu", "awake"), "gguf": ("llama_cpp", "cpu", "awake")}
    formats = {m["name"]: m["details"]["format"] for m in loaded}
    assert formats == {"hf": "safetensors", "gguf": "gguf"}
    cards = httpx.get(f"{server.openai_url}/models", headers=auth()).json()["data"]
    by_id = {c["id"]: c for c in cards}
    assert (by_id["hf"]["engine"], by_id["hf"]["device"], by_id["hf"]["state"]) == (
        "vllm",
        "cpu",
        "awake",
    )
    assert by_id["gguf"]["engine"] == "llama_cpp"


def vllm_worker(server: Server) -> psutil.Process:
    """The worker that runs vLLM (the only one with torch mapped)."""
    for process in server.workers():
        if any("libtorch" in m.path for m in process.memory_maps()):
            return process
    raise AssertionError("no vLLM worker")


# When the worker dies mid-stream, httpcore in this (client) process sometimes drops a
# socket to the server unclosed (a ResourceWarning when the GC finds it; the server is
# another process). It is collected here, under this test's filter.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_kill_9_of_the_vllm_worker_fails_only_its_streams(server: Server) -> None:
    chat(server.openai(api_key=API_KEY), "hf", stream=False)  # Loaded (again, if evicted).
    doomed = {"model": "hf", "prompt": "a", "max_tokens": 1500, "ignore_eos": True}
    other = {"model": "gguf", "prompt": "b", "max_tokens": 2000, "ignore_eos": True}
    # No keep-alive: each connection closes with its response, whatever the server did.
    no_pool = httpx.Limits(max_keepalive_connections=0)
    with (
        httpx.Client(base_url=server.base_url, headers=auth(), limits=no_pool) as client,
        client.stream("POST", "/v1/completions", json={**doomed, "stream": True}) as dying,
        client.stream("POST", "/v1/completions", json={**other, "stream": True}) as living,
    ):
        dying_lines, living_lines = dying.iter_lines(), living.iter_lines()
        next(dying_lines), next(living_lines)
        vllm_worker(server).kill()
        events = [line for line in dying_lines if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2].removeprefix("data: "))["error"]
        assert error["code"] == "worker_crashed" and "SIGKILL" in error["message"]
        chunks = [json.loads(line[6:]) for line in living_lines if line.startswith("data: {")]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    again = server.openai(api_key=API_KEY).completions.create(model="hf", prompt="a", max_tokens=3)
    assert again.usage is not None and again.usage.completion_tokens == 3
    gc.collect()


def test_two_hf_models_alternate_under_a_budget_for_one(server: Server, hf_qwen2: Path) -> None:
    """On a CPU the ladder's only rung is exit: each switch unloads the other HF model
    and loads this one; the GGUF model stays."""
    client = server.openai(api_key=API_KEY)
    names = {"hf": "llama", str(hf_qwen2): "qwen2"}
    for model in ("hf", str(hf_qwen2), "hf", str(hf_qwen2)):
        text, reason = chat(client, model, stream=True)
        assert text and reason == "length"
        loaded = httpx.get(f"{server.base_url}/api/ps", headers=auth()).json()["models"]
        hf_loaded = [m for m in loaded if m["details"]["format"] == "safetensors"]
        assert [m["details"]["family"] for m in hf_loaded] == [names[model]]
    assert len(list(p for p in server.workers() if p.is_running())) <= 3  # 2 + a spare.
