"""The real ``ollama`` client against ``llmport serve``: a whole session, on one port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest

from fake_hub import FakeHub
from server_helpers import Server, running_server
from tiny_model import write_tiny_model

REPO = "tester/tiny-GGUF"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 8}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    folder = tmp_path_factory.mktemp("hub-files")
    with FakeHub() as hub:
        for quant, seed in (("Q4_K_M", 5), ("Q8_0", 6)):
            data = write_tiny_model(folder / f"tiny-{quant}.gguf", seed=seed).read_bytes()
            hub.add_file(REPO, f"tiny-{quant}.gguf", data)
        yield hub


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ollama")
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"), "HF_HUB_DISABLE_XET": "1"}
    with running_server(home, env=env) as server:
        yield server


@pytest.fixture
def client(server: Server) -> Iterator[ollama.Client]:
    client = ollama.Client(host=server.base_url)
    yield client
    client._client.close()


def test_a_whole_session_with_the_ollama_client(client: ollama.Client, server: Server) -> None:
    name = f"hf.co/{REPO}:Q8_0"
    assert "gemma3:270m" in [m.model for m in client.list().models]

    statuses = [p.status for p in client.pull(name, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    listed = {m.model: m for m in client.list().models}
    assert listed[name].size > 0 and listed[name].digest
    openai_listed = httpx.get(f"{server.openai_url}/models").json()["data"]
    assert name in [m["id"] for m in openai_listed]  # OpenAI clients see pulled models too.
    assert listed[name].details.family == "llama"
    assert listed[name].details.quantization_level == "Q8_0"

    shown = client.show(name)
    assert shown.modelfile and shown.modelfile.startswith("FROM ")
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.details.format == "gguf"

    messages = [{"role": "user", "content": "hello"}]
    whole = client.chat(name, messages=messages, options=GREEDY)
    assert whole.done and whole.done_reason in {"stop", "length"}
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.prompt_eval_count and whole.eval_count == 8
    assert whole.total_duration and whole.eval_duration and whole.prompt_eval_duration
    parts = list(client.chat(name, messages=messages, options=GREEDY, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].done and not any(p.done for p in parts[:-1])

    generated = client.generate(name, "Once upon", options=GREEDY)
    assert generated.response and generated.eval_count == 8 and generated.context

    embedded = client.embed(name, input=["one", "two"])
    vectors = np.array(embedded.embeddings)
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert embedded.prompt_eval_count

    running = {m.model: m for m in client.ps().models}
    assert name in running and running[name].size and running[name].expires_at

    client.copy(name, "mybot")
    assert client.chat("mybot", messages=messages, options=GREEDY).message.content == (
        whole.message.content
    )
    client.delete("mybot")
    assert "mybot:latest" not in [m.model for m in client.list().models]
    client.delete(name)
    assert name not in [m.model for m in client.list().models]


def test_openai_and_ollama_routes_give_the_same_text(
    client: ollama.Client, server: Server, model_paths: list[Path]
) -> None:
    model = str(model_paths[0])
    ollama_text = client.generate(model, "same prompt", raw=True, options=GREEDY).response
    openai_text = (
        server.openai()
        .completions.create(model=model, prompt="same prompt", max_tokens=8, temperature=0)
        .choices[0]
        .text
    )
    assert ollama_text == openai_text
    messages = [{"role": "user", "content": "same chat"}]
    ollama_chat = client.chat(model, messages=messages, options=GREEDY).message.content
    openai_chat = (
        server.openai()
        .chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)  # type: ignore[arg-type]
        .choices[0]
        .message.content
    )
    assert ollama_chat == openai_chat


def test_empty_requests_load_and_unload(client: ollama.Client, model_paths: list[Path]) -> None:
    model = str(model_paths[1])
    loaded = client.generate(model)
    assert loaded.done_reason == "load"
    assert model in [m.model for m in client.ps().models]
    unloaded = client.generate(model, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert model not in [m.model for m in client.ps().models]


def test_create_with_a_system_prompt_and_parameters(
    client: ollama.Client, server: Server, model_paths: list[Path]
) -> None:
    client.create(
        "terse", from_=str(model_paths[0]), system="Be terse.", parameters={"num_predict": 3}
    )
    shown = client.show("terse")
    assert shown.system == "Be terse." if hasattr(shown, "system") else True
    assert shown.parameters and "num_predict 3" in shown.parameters
    answer = client.chat("terse", messages=[{"role": "user", "content": "hi"}])
    assert answer.eval_count == 3
    # The OpenAI routes honour the Modelfile too: its parameters fill what is unset.
    openai = server.openai()
    ask = [{"role": "user", "content": "hi"}]
    default = openai.chat.completions.create(model="terse", messages=ask,  # type: ignore[arg-type]
                                             extra_body={"ignore_eos": True})  # fmt: skip
    assert default.usage is not None and default.usage.completion_tokens == 3
    explicit = openai.chat.completions.create(model="terse", messages=ask, max_tokens=5,  # type: ignore[arg-type]
                                              extra_body={"ignore_eos": True})  # fmt: skip
    assert explicit.usage is not None and explicit.usage.completion_tokens == 5
    client.delete("terse")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/generate", {"model": "missing-model", "prompt": "x"}, 404),
        (
            "/api/chat",
            {"model": "missing-model", "messages": [{"role": "user", "content": "x"}]},
            404,
        ),
        ("/api/generate", {"model": "M", "prompt": "x", "options": {"num_predict": -5}}, 400),
        ("/api/generate", {"model": "M", "prompt": "x", "options": {"num_ctx": 10**9}}, 400),
        ("/api/generate", {"model": "M", "prompt": "x", "options": {"temperature": "hot"}}, 400),
        ("/api/generate", {"model": "M", "prompt": 5}, 400),
        ("/api/chat", {"model": "M", "messages": "hi"}, 400),
        ("/api/embed", {"model": "M", "input": 3}, 400),
        ("/api/show", {"model": "missing-model"}, 404),
        ("/api/delete", {"model": "missing-model"}, 404),
        ("/api/copy", {"source": "missing-model", "destination": "x"}, 404),
        ("/api/pull", {"model": "hf.co/tester/nothing", "stream": False}, 404),
        ("/api/pull", {"model": f"hf.co/{REPO}:Q2_K", "stream": False}, 404),
    ],
)
def test_bad_inputs_answer_4xx_in_ollama_shape(
    server: Server, model_paths: list[Path], path: str, body: dict[str, object], status: int
) -> None:
    if body.get("model") == "M":
        body = {**body, "model": str(model_paths[0])}
    method = "DELETE" if path == "/api/delete" else "POST"
    response = httpx.request(method, f"{server.base_url}{path}", json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error
    if status == 404 and "missing-model" in str(body):
        assert error == "model 'missing-model' not found"
    assert httpx.get(f"{server.base_url}/").text == "llmport is running"


def test_version_and_root(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/api/version").json()["version"]
    assert httpx.head(f"{server.base_url}/").status_code == 200


def test_format_json_and_schema_are_enforced(
    client: ollama.Client, model_paths: list[Path]
) -> None:
    model = str(model_paths[0])
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = client.chat(model, messages=[{"role": "user", "content": "ok?"}], format=schema,
                         options={"num_predict": 200})  # fmt: skip
    assert answer.message.content is not None
    assert isinstance(json.loads(answer.message.content)["ok"], bool)
    # Any JSON object: a random model may ramble past the budget ("length"); when it
    # stops by itself the object is complete and parses.
    generated = client.generate(model, "{", format="json", options={"num_predict": 300})
    assert generated.done_reason in {"stop", "length"}
    if generated.done_reason == "stop":
        assert isinstance(json.loads(generated.response), dict)
    else:
        assert generated.response.startswith("{")
