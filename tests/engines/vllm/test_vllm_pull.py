"""``llmport pull hf.co/org/name`` of a safetensors repo, through the real CLI against a
real server and a fake Hub: the files land in the Hugging Face cache, ``list`` shows the
model as safetensors, vLLM serves it by ``org/name`` and ``hf.co/org/name``, and ``rm``
unloads it and removes it from the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from fake_hub import FakeHub
from server_helpers import running_server

REPO = "tester/tiny-llama"


def llmport(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "llmport.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **env})  # fmt: skip


def test_pull_list_and_serve_a_safetensors_repo(tmp_path: Path, hf_llama: Path) -> None:
    with FakeHub() as hub:
        hub.add_folder(REPO, hf_llama)
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
               "LLMPORT_ENFORCE_EAGER": "1"}  # fmt: skip
        with running_server(tmp_path, env=env) as server:
            cli = {**env, "LLMPORT_HOST": server.base_url.removeprefix("http://")}
            pulled = llmport("pull", f"hf.co/{REPO}", env=cli)
            assert pulled.returncode == 0 and "success" in pulled.stderr, pulled.stderr
            snapshot = tmp_path / "hf" / "hub" / "models--tester--tiny-llama" / "snapshots"
            files = {p.name for p in next(snapshot.iterdir()).iterdir()}
            assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
            listed = llmport("list", env=cli).stdout.splitlines()
            assert listed[0].split()[:4] == ["NAME", "ID", "SIZE", "FORMAT"]
            row = next(line.split() for line in listed if line.startswith(f"hf.co/{REPO}"))
            assert "safetensors" in row
            gguf_row = next(line.split() for line in listed if line.startswith("gemma3"))
            assert "gguf" in gguf_row
            tags = httpx.get(f"{server.base_url}/api/tags").json()["models"]
            tag = next(m for m in tags if m["name"] == f"hf.co/{REPO}")
            assert tag["details"]["format"] == "safetensors" and tag["size"] > 0
            assert f"hf.co/{REPO}" in {m.id for m in server.openai().models.list()}
        hub_requests = len(hub.requests)
        with running_server(tmp_path, env=env) as server:  # The Hub is not asked again.
            client = server.openai()
            for name in (REPO, f"hf.co/{REPO}"):
                answer = client.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=3
                )
                assert answer.choices[0].finish_reason == "length", name
            loaded = httpx.get(f"{server.base_url}/api/ps").json()["models"]
            assert {m["engine"] for m in loaded} == {"vllm"}
            assert len(loaded) == 1  # Both names lead to one snapshot: one engine.
            cli = {**env, "LLMPORT_HOST": server.base_url.removeprefix("http://")}
            removed = llmport("rm", f"hf.co/{REPO}", env=cli)  # Not the spelling it loaded by.
            assert removed.returncode == 0, removed.stderr
            assert httpx.get(f"{server.base_url}/api/ps").json()["models"] == []
            assert not (tmp_path / "hf" / "hub" / "models--tester--tiny-llama").exists()
            tags = httpx.get(f"{server.base_url}/api/tags").json()["models"]
            assert f"hf.co/{REPO}" not in {m["name"] for m in tags}
        assert len(hub.requests) == hub_requests
