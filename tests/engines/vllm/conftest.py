"""Session fixtures for the vLLM tests: tiny HF models, and ONE server that serves an HF
model (vLLM) beside the tiny GGUF (llama.cpp), so the suite pays vLLM's start once.

The budget fits one vLLM model and the GGUF, not two vLLM models: the eviction test
alternates two HF models through this same server, and the vision and embedding
models, asked for by their paths, take their turns the same way. Image URLs may name
127.0.0.1 (a test serves images there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_hf import write_tiny_embedding_model, write_tiny_hf_model, write_tiny_vision_model
from vllm_server import API_KEY, BUDGET

from server_helpers import Server, running_server

pytest.importorskip("vllm", reason="the vLLM engine's tests need vLLM (pip install llmport[vllm])")


@pytest.fixture(scope="session")
def hf_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny-llama", "llama", seed=0)


@pytest.fixture(scope="session")
def hf_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny-qwen2", "qwen2", seed=1)


@pytest.fixture(scope="session")
def hf_vision(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_vision_model(tmp_path_factory.mktemp("hf") / "tiny-idefics3", seed=2)


@pytest.fixture(scope="session")
def hf_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_embedding_model(tmp_path_factory.mktemp("hf") / "tiny-embedder", seed=3)


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, hf_llama: Path, tiny_model_path: Path
) -> Iterator[Server]:
    """``hf`` (vLLM) and ``gguf`` (llama.cpp) on one port, behind an API key."""
    args = (str(hf_llama), str(tiny_model_path), "--served-model-name", "hf",
            "--served-model-name", "gguf", "--api-key", API_KEY, "--enforce-eager",
            "--memory-budget", BUDGET, "--max-loaded-models", "0",
            "--allowed-media-domains", "127.0.0.1")  # fmt: skip
    with running_server(tmp_path_factory.mktemp("vllm-server"), *args, timeout=300) as s:
        yield s
