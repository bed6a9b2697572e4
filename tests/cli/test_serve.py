"""``llmport serve``'s flags: vLLM's names, clear refusals where llama.cpp cannot honour them."""

from __future__ import annotations

import socket
import sys
import types
from pathlib import Path

import httpx
import pytest
from test_main import llmport

from llmport.cli import serve
from llmport.cli.flags import flag_name
from llmport.config import EngineConfig
from server_helpers import running_server


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tensor-parallel-size", "2"], "one worker process"),
        (["--pipeline-parallel-size", "2"], "one worker process"),
        (["--dtype", "float8"], "vLLM takes one of"),
        (["--kv-cache-dtype", "q9"], "q8_0"),
        (["--gpu-memory-utilization", "0.9"], "no GPU"),
        (["--tool-call-parser", "nonsense"], "hermes"),
        (["--reasoning-parser", "harmony"], "'deepseek_r1' or 'qwen3'"),
        (["--keep-alive", "soon"], "not a duration"),
        (["--memory-budget", "lots"], "not a size"),
        (["--max-num-seqs", "0"], "--max-num-seqs"),
        (["--max-num-seqs", "many"], "--max-num-seqs: Input should be a valid integer"),
        (["--flash-attn", "sometimes"], "--flash-attn: Input should be 'auto', 'on' or 'off'"),
        (["--flash-attn", "off", "--kv-cache-dtype", "q8_0"], "quantized KV cache"),
        (["--no-enable-prefix-caching", "--num-prefix-cache-slots", "2"], "caching is off"),
        (["--n-gpu-layers", "8"], "no GPU"),
        (["no-such-model"], "not found"),
        (["--ray", "127.0.0.1:1"], "no Ray cluster answers there"),
        (["--ray", "127.0.0.1:1", "--memory-budget", "1GiB"], "each node's budget comes from"),
        (["--ray-heartbeat-timeout", "0"], "--ray-heartbeat-timeout"),
    ],
)
def test_bad_flags_fail_at_start_with_one_line(args: list[str], message: str) -> None:
    result = llmport("serve", "--port", "1", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_a_bad_variable_is_named_as_such_and_a_flag_overrides_it() -> None:
    result = llmport("serve", "--port", "1", env={"LLMPORT_MAX_NUM_SEQS": "0"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: LLMPORT_MAX_NUM_SEQS: Input should be greater")
    overridden = llmport("serve", "--port", "1", "--max-num-seqs", "2", "--dtype", "x",
                         env={"LLMPORT_MAX_NUM_SEQS": "0"})  # fmt: skip
    assert overridden.stderr.startswith("error: --dtype x:"), overridden.stderr


def test_help_lists_every_setting_as_a_flag() -> None:
    result = llmport("serve", "--help", env={"COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    for cls in serve.PANELS.values():
        for name in cls.model_fields:
            assert f"  {flag_name(name)} " in result.stdout, name
    assert "[default: 16; env: LLMPORT_MAX_NUM_SEQS]" in result.stdout
    assert "--warm-spare / --no-warm-spare" in result.stdout


def test_gpu_flags_on_a_gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offloaded layers are taken (a share of GPU memory is vLLM's: tests/engines/vllm)."""
    gpu_build = types.ModuleType("llmport.engines.llama_cpp.backend")  # Not llama.cpp itself.
    gpu_build.supports_gpu_offload = lambda: True  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llmport.engines.llama_cpp.backend", gpu_build)
    serve._check_gpu(EngineConfig(n_gpu_layers=20))


def test_settings_that_would_be_overridden_silently_pass_when_consistent() -> None:
    serve._check_engine(EngineConfig(enable_prefix_caching=False, num_prefix_cache_slots=0))
    serve._check_engine(EngineConfig(flash_attn="off", kv_cache_dtype="bf16"))
    serve._check_engine(EngineConfig(flash_attn="on", kv_cache_dtype="q4_0"))


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


def test_generated_flags_reach_the_engine_and_manager_and_win_over_the_environment(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    args = (str(tiny_model_path), "--max-model-len", "512", "--no-warm-spare",
            "--enable-auto-tool-choice")  # fmt: skip
    env = {"LLMPORT_MAX_MODEL_LEN": "1024", "LLMPORT_MAX_NUM_SEQS": "2"}
    with running_server(tmp_path, *args, env=env) as server:
        models = httpx.get(f"{server.openai_url}/models").json()["data"]
        assert [m["max_model_len"] for m in models if m["id"] == str(tiny_model_path)] == [512]
        engines = [w for w in server.workers() if "spawn_main" in " ".join(w.cmdline())]
        assert len(engines) == 1  # The loaded model's worker, and no spare.
