"""Bad requests get OpenAI-shaped errors with the right status, and leave nothing running."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from server_helpers import Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_paths: list[Path]) -> Server:
    # One sequence and no queue: a second concurrent request is refused.
    with running_server(
        tmp_path_factory.mktemp("errors"), "--max-num-seqs", "1", "--max-queue", "0"
    ) as server:
        yield server  # type: ignore[misc]


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def wait_idle(server: Server, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while metric(server, "llmport_num_requests_running") or metric(
        server, "llmport_num_requests_waiting"
    ):
        assert time.monotonic() < deadline, "requests still running in an engine"
        time.sleep(0.05)


def post(server: Server, path: str, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.base_url}{path}",
        content=content,
        headers={"content-type": "application/json"},
        timeout=60,  # A busy machine may take a while over Gemma's answer.
    )


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_unknown_model_is_404_model_not_found(server: Server) -> None:
    client = server.openai("x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="no-such-model", prompt="hi")
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "prompt": "hi", "max_tokens": "many"}, "max_tokens"),
        ({"model": "m", "prompt": "hi", "temperature": [1]}, "temperature"),
        ({"prompt": "hi"}, "model"),
        ({"model": "m", "prompt": {"a": 1}}, "prompt"),
    ],
)
def test_wrong_types_are_400_naming_the_field(
    server: Server, model_paths: list[Path], body: dict[str, object], param: str
) -> None:
    if "model" in body:
        body = {**body, "model": str(model_paths[0])}
    response = post(server, "/v1/completions", body)
    assert response.status_code == 400
    error = error_of(response)
    assert str(error["param"]).startswith(param)
    assert param in str(error["message"])


def test_malformed_json_is_400(server: Server) -> None:
    response = post(server, "/v1/chat/completions", b'{"model": "x", "messages": [')
    assert response.status_code == 400
    assert "JSON" in str(error_of(response)["message"])


def test_bad_sampling_values_are_400_naming_the_field(
    server: Server, model_paths: list[Path]
) -> None:
    for field, value in (("temperature", -1), ("top_p", 0), ("n", 0), ("max_tokens", 0)):
        response = post(
            server, "/v1/completions", {"model": str(model_paths[0]), "prompt": "x", field: value}
        )
        assert response.status_code == 400, (field, response.text)
        assert error_of(response)["param"] == field


def test_prompt_longer_than_the_context_is_400_naming_both_lengths(
    server: Server, model_paths: list[Path]
) -> None:
    response = post(
        server,
        "/v1/completions",
        {"model": str(model_paths[0]), "prompt": [5] * 5000, "max_tokens": 1},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded"
    assert "5000" in str(error["message"]) and "4096" in str(error["message"])


def test_unsupported_options_are_400(server: Server, model_paths: list[Path]) -> None:
    response = post(
        server,
        "/v1/chat/completions",
        {
            "model": str(model_paths[0]),
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a$"}},
            },
        },
    )
    assert response.status_code == 400
    assert error_of(response)["param"] == "response_format"


@pytest.mark.slow
def test_full_queue_is_503_with_retry_after(server: Server, gemma_model_path: Path) -> None:
    # Gemma is slow enough here that a 3000-token answer is surely still running.
    model = str(gemma_model_path)
    long = {"model": model, "prompt": "a", "max_tokens": 3000, "stream": True, "ignore_eos": True}
    url = f"{server.base_url}/v1/completions"
    with httpx.stream("POST", url, json=long, timeout=120) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()  # Kept: a dropped iterator closes the connection.
        next(lines)  # The long request holds the only sequence.
        refused = post(server, "/v1/completions", {"model": model, "prompt": "x"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert error_of(refused)["code"] == "queue_full"
    wait_idle(server)  # Closing the stream aborted the long request.
    assert post(server, "/v1/completions", {"model": model, "prompt": "x"}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_aborts_within_moments(
    server: Server, gemma_model_path: Path, stream: bool
) -> None:
    body = {
        "model": str(gemma_model_path),
        "prompt": "go",
        "max_tokens": 3000,
        "ignore_eos": True,
        "stream": stream,
    }
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        gone = pool.submit(read_for, f"{server.base_url}/v1/completions", body, 3.0)
        deadline = time.monotonic() + 10
        while metric(server, "llmport_num_requests_running") != 1:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
        gone.result()
    wait_idle(server, within=2.0)


def read_for(url: str, body: dict[str, object], seconds: float) -> None:
    """Read the response for ``seconds``, then hang up before it is complete."""
    deadline = time.monotonic() + seconds
    try:
        with httpx.stream("POST", url, json=body, timeout=seconds) as response:
            for _ in response.iter_bytes():
                if time.monotonic() > deadline:
                    return
    except httpx.ReadTimeout:
        return
    raise AssertionError("the response completed; the test needs a longer one")


def test_none_of_the_errors_broke_the_server(server: Server, model_paths: list[Path]) -> None:
    client = server.openai("x")
    result = client.completions.create(model=str(model_paths[0]), prompt="still here", max_tokens=2)
    assert result.choices[0].finish_reason in {"length", "stop"}
    wait_idle(server)


def test_api_key_is_required_everywhere_but_health(tmp_path: Path, model_paths: list[Path]) -> None:
    with running_server(tmp_path, "--api-key", "sesame") as server:
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sesame"}):
            response = httpx.get(f"{server.base_url}/v1/models", headers=headers)
            assert response.status_code == 401
            assert error_of(response)["code"] == "invalid_api_key"
        assert httpx.get(f"{server.base_url}/metrics").status_code == 401
        client = server.openai("sesame")
        result = client.completions.create(model=str(model_paths[0]), prompt="hi", max_tokens=1)
        assert result.choices


def test_api_key_comes_from_the_environment(tmp_path: Path) -> None:
    with running_server(tmp_path, env={"LLMPORT_API_KEY": "from-env"}) as server:
        assert httpx.get(f"{server.base_url}/v1/models").status_code == 401
        ok = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": "Bearer from-env"})
        assert ok.status_code == 200
