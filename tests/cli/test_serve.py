"""``llmport serve``'s flags: vLLM's names, clear refusals where llama.cpp cannot honour them."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from test_main import llmport

from server_helpers import running_server


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tensor-parallel-size", "2"], "one process"),
        (["--dtype", "float16"], "GGUF weights"),
        (["--kv-cache-dtype", "fp8_e5m2"], "q8_0"),
        (["--gpu-memory-utilization", "0.9"], "no GPU"),
        (["--tool-call-parser", "nonsense"], "hermes"),
        (["--keep-alive", "soon"], "not a duration"),
        (["--memory-budget", "lots"], "not a size"),
        (["--max-num-seqs", "0"], "--max-num-seqs"),
        (["no-such-model"], "not found"),
    ],
)
def test_bad_flags_fail_at_start_with_one_line(args: list[str], message: str) -> None:
    result = llmport("serve", "--port", "1", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = llmport("serve", "--port", port)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_served_model_names_alias_the_preloaded_model(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    args = (str(tiny_model_path), "--served-model-name", "tiny", "--served-model-name", "t2")
    with running_server(tmp_path, *args, env={"LLMPORT_MAX_NUM_SEQS": "2"}) as server:
        models = httpx.get(f"{server.openai_url}/models").json()["data"]
        loaded = {m["id"]: m for m in models}
        assert loaded["tiny"]["max_model_len"] == 4096  # Preloaded at start.
        for name in ("tiny", "t2"):
            response = httpx.post(
                f"{server.openai_url}/completions",
                json={"model": name, "prompt": "hi", "max_tokens": 2},
            )
            assert response.status_code == 200, response.text
            assert response.json()["model"] == name
