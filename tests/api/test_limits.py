"""Heavy and hostile requests against a real server: every limit answers 4xx before work
is spent, long prompts travel to the worker whole, and nothing a request took stays."""

from __future__ import annotations

import concurrent.futures
import json
import random
import string
from pathlib import Path

import httpx
import psutil
import pytest

from server_helpers import Server, running_server
from tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def long_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for 8k tokens, so 4,000-token prompts fit."""
    folder = tmp_path_factory.mktemp("long")
    return write_tiny_model(folder / "long.gguf", seed=5, n_ctx_train=8192)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, long_model: Path) -> Server:
    with running_server(
        tmp_path_factory.mktemp("limits"), str(long_model), "--served-model-name", "long",
        "--max-request-bytes", str(4 << 20), "--max-num-batched-tokens", "2048",
    ) as server:  # fmt: skip
        yield server  # type: ignore[misc]


def tree_rss(server: Server) -> int:
    processes = [psutil.Process(server.process.pid), *server.workers()]
    return sum(p.memory_info().rss for p in processes)


def post(server: Server, path: str, body: object, timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=timeout)


def words(num_words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=4)) for _ in range(num_words))


def assert_refused(response: httpx.Response, status: int, param: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if isinstance(error, str):  # Ollama's shape: the message alone.
        error = {"param": error.partition(":")[0], "message": error}
    assert error["param"] == param, error
    assert "at most" in error["message"], error


def test_a_huge_n_is_refused_at_once_and_costs_no_memory(server: Server) -> None:
    post(server, "/v1/completions", {"model": "long", "prompt": "x", "max_tokens": 2})
    before = tree_rss(server)
    response = post(server, "/v1/completions", {"model": "long", "prompt": "x", "n": 1_000_000})
    assert_refused(response, 400, "n")
    assert "1000000" in response.json()["error"]["message"]
    assert tree_rss(server) < before + (32 << 20)


HELLO = {"role": "user", "content": "a"}
BIAS = {str(i): 1 for i in range(2000)}
TOOLS = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(300)]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": ["a"] * 3000}, "prompt"),
        ("/v1/embeddings", {"input": ["a"] * 3000}, "prompt"),
        ("/v1/completions", {"prompt": "a", "stop": ["s"] * 40}, "stop"),
        ("/v1/completions", {"prompt": "a", "stop": ["s" * 5000]}, "stop"),
        ("/v1/completions", {"prompt": "a", "logit_bias": BIAS}, "logit_bias"),
        ("/v1/chat/completions", {"messages": [HELLO] * 5000}, "messages"),
        ("/v1/chat/completions", {"messages": [HELLO], "tools": TOOLS}, "tools"),
        ("/api/chat", {"messages": [HELLO] * 5000}, "messages"),
        ("/api/embed", {"input": ["a"] * 3000}, "prompt"),
        ("/api/generate", {"prompt": "a", "options": {"stop": ["s"] * 40}}, "stop"),
    ],
)
def test_each_client_controlled_dimension_has_a_limit(
    server: Server, long_model: Path, path: str, body: dict[str, object], param: str
) -> None:
    model = str(long_model)  # Ollama's routes do not know --served-model-name yet.
    assert_refused(post(server, path, {"model": model, "stream": False, **body}), 400, param)


def test_schemas_too_large_to_compile_are_refused(server: Server) -> None:
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
    body = {"model": "long", "prompt": "a", "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": huge}}}  # fmt: skip
    response = post(server, "/v1/completions", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"
    long_string = {"type": "string", "maxLength": 100_000_000}
    body["response_format"] = {"type": "json_schema", "json_schema": {"schema": long_string}}
    response = post(server, "/v1/completions", body)
    assert response.status_code == 400 and "maxLength" in response.json()["error"]["message"]


def test_a_body_over_the_limit_is_413(server: Server) -> None:
    prompt = "x" * (5 << 20)
    response = post(server, "/v1/completions", {"model": "long", "prompt": prompt})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_huge_prompts_are_refused_while_other_streams_on_the_model_go_on(server: Server) -> None:
    def stream() -> list[str]:
        body = {"model": "long", "prompt": words(50, 1), "max_tokens": 64, "stream": True,
                "ignore_eos": True}  # fmt: skip
        with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body,
                          timeout=120) as response:  # fmt: skip
            assert response.status_code == 200
            return [line for line in response.iter_lines() if line.startswith("data: ")]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        streams = [pool.submit(stream) for _ in range(3)]
        # 1.5 MB of words: refused by length before it is tokenized.
        refused = post(server, "/v1/completions", {"model": "long", "prompt": words(300_000, 2)})
        assert_refused(refused, 400, "prompt")
        # 0.9 MB: under the character limit, so it crosses the pipe to the worker (several
        # socket buffers' worth) and is refused there for the context.
        too_long = post(server, "/v1/completions", {"model": "long", "prompt": words(180_000, 3)})
        assert too_long.status_code == 400, too_long.text
        assert too_long.json()["error"]["code"] == "context_length_exceeded"
        for future in streams:
            lines = future.result()
            assert lines[-1] == "data: [DONE]"
            assert not any('"error"' in line for line in lines)


def test_sixteen_concurrent_long_prompts_all_finish(server: Server) -> None:
    def stream(seed: int) -> int:
        body = {"model": "long", "prompt": words(1000, 100 + seed), "max_tokens": 16,
                "stream": True, "ignore_eos": True}  # fmt: skip
        with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body,
                          timeout=300) as response:  # fmt: skip
            assert response.status_code == 200, response.read()
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        assert not any('"error"' in line for line in lines)
        return sum(json.loads(line[6:])["choices"][0]["finish_reason"] == "length"
                   for line in lines if json.loads(line[6:])["choices"])  # fmt: skip

    tokens = post(server, "/tokenize", {"model": "long", "prompt": words(1000, 100)})
    assert tokens.json()["count"] >= 4000  # A 4,000-token prompt each.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(stream, range(16))) == [1] * 16
