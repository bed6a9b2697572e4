"""The resolver marks Hugging Face models ``hf`` and the registry gives them to vLLM;
GGUF files stay llama.cpp's. The planner sizes them from their headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_cache import put_in_hf_cache
from huggingface_hub import constants

from llmport.engine.registry import MiB
from llmport.engines.kinds import default_registry
from llmport.engines.vllm.config import VllmConfig
from llmport.engines.vllm.memory import VLLM_OVERHEAD_BYTES, GiB, plan
from llmport.errors import ModelNotFound
from llmport.models.resolver import Resolver
from llmport.store.refs import ModelSources

REPO = "NousResearch/Meta-Llama-3-8B-Instruct"


@pytest.fixture
def hf_cache(tmp_path: Path, hf_llama: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    put_in_hf_cache(cache, REPO, hf_llama)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_folders_and_cached_repo_ids_are_hf_and_vllm_serves_them(
    tmp_path: Path, hf_llama: Path, tiny_model_path: Path, hf_cache: Path
) -> None:
    resolver = Resolver(tmp_path / "home")
    registry = default_registry()
    for name in (str(hf_llama), REPO, f"hf.co/{REPO}"):
        spec = resolver.resolve_now(name)
        assert spec.format == "hf" and spec.hf is not None, name
        assert spec.architecture == "llama" and spec.trained_context == 2048
        assert spec.chat_template and "<|im_start|>" in spec.chat_template
        assert registry.kind_for(spec).name == "vllm"
        assert "embedding" not in spec.capabilities
    gguf = resolver.resolve_now(str(tiny_model_path))
    assert gguf.format == "gguf" and registry.kind_for(gguf).name == "llama_cpp"


def test_an_uncached_repo_id_says_how_to_get_it(tmp_path: Path, hf_cache: Path) -> None:
    with pytest.raises(ModelNotFound, match="hf download org/missing"):
        Resolver(tmp_path / "home").resolve_now("org/missing")


def test_folders_are_paths_a_server_may_refuse(tmp_path: Path, hf_llama: Path) -> None:
    resolver = Resolver(tmp_path / "home", sources=ModelSources(allow_paths=False))
    with pytest.raises(ModelNotFound):
        resolver.resolve_now(str(hf_llama))
    aliased = Resolver(tmp_path / "home", {"mine": str(hf_llama)},
                       ModelSources(allow_paths=False))  # fmt: skip
    assert aliased.resolve_now("mine").format == "hf"  # The command line is trusted.


def test_the_plan_counts_weights_from_headers_and_a_whole_gib_of_kv_on_cpu(
    tmp_path: Path, hf_llama: Path
) -> None:
    spec = Resolver(tmp_path / "home").resolve_now(str(hf_llama))
    assert spec.hf is not None
    config, memory = plan(spec, VllmConfig(), 64 * GiB)
    assert isinstance(config, VllmConfig)
    assert memory.weights_bytes == spec.hf.total_weight_bytes == spec.hf.num_params * 4
    assert memory.kv_bytes == GiB and config.kv_cache_bytes == GiB  # CPU: whole GiB.
    assert config.max_model_len == 2048 and config.dtype == "float32"
    assert memory.overhead_bytes == VLLM_OVERHEAD_BYTES
    halved, _ = plan(spec, VllmConfig(dtype="bfloat16", max_model_len=512), 64 * GiB)
    assert isinstance(halved, VllmConfig) and halved.max_model_len == 512
    _, smaller = plan(spec, VllmConfig(dtype="bfloat16"), 64 * GiB)
    assert smaller.weights_bytes * 2 == memory.weights_bytes
    assert memory.total_bytes < 3 * GiB and memory.compute_bytes > 64 * MiB
