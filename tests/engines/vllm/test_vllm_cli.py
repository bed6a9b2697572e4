"""The seed's three ``vllm serve`` command lines, given to ``llmport serve``: the first
serves (its model from the Hugging Face cache); the two that need GPUs are refused on a
machine without one, with one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from hf_cache import put_in_hf_cache
from vllm_server import API_KEY

from server_helpers import running_server

SEED_2 = ("/home/ly/qwen2.5/Qwen2.5-32B-Instruct/ --tensor-parallel-size 8 --dtype auto "
          "--api-key 123 --gpu-memory-utilization 0.95 --max-model-len 27768 "
          "--enable-auto-tool-choice --tool-call-parser hermes --served-model-name "
          "Qwen2.5-32B-Instruct --kv-cache-dtype fp8_e5m2")  # fmt: skip
SEED_3 = ("/home/ly/qwen2.5/Qwen2-VL-7B-Instruct --dtype auto --tensor-parallel-size 1 "
          "--api-key 123 --gpu-memory-utilization 0.5 --max-model-len 5108 "
          "--enable-auto-tool-choice --tool-call-parser hermes --served-model-name "
          "Qwen2-VL-7B-Instruct --port 1236")  # fmt: skip


def serve(args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmport.cli.main", "serve", *args.split()],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env})  # fmt: skip


def test_the_seeds_gpu_command_lines_are_refused_here_in_one_line() -> None:
    for args, flag in ((SEED_2, "--gpu-memory-utilization 0.95"),
                       (SEED_3, "--gpu-memory-utilization 0.5")):  # fmt: skip
        result = serve(args, CUDA_VISIBLE_DEVICES="2")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: {flag}: no GPU here"), result.stderr
        assert result.stderr.count("\n") == 1
    result = serve("--tensor-parallel-size 8 --port 1")
    assert result.returncode == 2 and "one worker process" in result.stderr


def test_the_seeds_first_command_line_serves_the_cached_model(
    tmp_path: Path, hf_llama: Path
) -> None:
    cache = tmp_path / "hub"
    put_in_hf_cache(cache, "NousResearch/Meta-Llama-3-8B-Instruct", hf_llama)
    args = ("NousResearch/Meta-Llama-3-8B-Instruct", "--dtype", "auto", "--api-key", API_KEY)
    env = {"HF_HUB_CACHE": str(cache), "LLMPORT_ENFORCE_EAGER": "1"}  # Eager: loads faster.
    with running_server(tmp_path, *args, env=env, timeout=300) as server:
        assert httpx.get(f"{server.openai_url}/models").status_code == 401
        client = server.openai(api_key=API_KEY)
        assert "NousResearch/Meta-Llama-3-8B-Instruct" in {m.id for m in client.models.list()}
        answer = client.chat.completions.create(
            model="NousResearch/Meta-Llama-3-8B-Instruct", max_tokens=3,
            messages=[{"role": "user", "content": "hi"}],
        )  # fmt: skip
        assert answer.choices[0].finish_reason == "length"
