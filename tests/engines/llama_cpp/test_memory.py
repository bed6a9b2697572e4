"""The llama.cpp kind's memory planner: estimates against what llama.cpp allocates, and
the context it gives a model under a budget."""

from pathlib import Path
from typing import Any

from llmport.config import EngineConfig
from llmport.engines.llama_cpp.memory import (
    MIN_CONTEXT_TOKENS,
    estimate_memory,
    kv_bytes_per_token,
    plan,
)
from llmport.models.resolver import Resolver
from llmport.store.gguf_info import read_gguf_info


def test_gemma_kv_cost_counts_every_layer(gemma_model_path: Path) -> None:
    info = read_gguf_info(gemma_model_path)
    # 18 layers x K and V x 256 dims x 1 KV head x 2 bytes.
    assert kv_bytes_per_token(info, "f16") == 18 * 2 * 256 * 1 * 2
    assert kv_bytes_per_token(info, "q8_0") < kv_bytes_per_token(info, "f16")


def test_estimate_grows_with_context_and_covers_the_weights(gemma_model_path: Path) -> None:
    info = read_gguf_info(gemma_model_path)
    small = estimate_memory(info, 1024, "f16", 24, 512)
    large = estimate_memory(info, 32768, "f16", 24, 512)
    assert large.total_bytes - small.total_bytes == large.kv_bytes - small.kv_bytes > 0
    assert small.weights_bytes > 0.9 * info.file_size


def test_gemma_kv_estimate_matches_what_llama_cpp_allocates(gemma_model_path: Path) -> None:
    info = read_gguf_info(gemma_model_path)
    # llama.cpp's log for 32768 cells, 24 sequences, ubatch 512: a non-SWA cache of 96 MiB
    # (3 layers x 32768 cells) and a SWA cache of 187.5 MiB (15 layers x 12800 cells).
    estimate = estimate_memory(info, 32768, "f16", 24, 512)
    assert estimate.kv_bytes == int((96 + 187.5) * 2**20)


def test_context_defaults_to_trained_and_shrinks_only_for_the_budget(
    gemma_model_path: Path, tmp_path: Path
) -> None:
    spec = Resolver(tmp_path).resolve_now(str(gemma_model_path))

    def planned_len(budget: int, **config: Any) -> int:
        planned, _ = plan(spec, EngineConfig(**config), budget)
        assert planned.max_model_len is not None
        return planned.max_model_len

    assert planned_len(1 << 40) == spec.trained_context == 32768
    capped = planned_len(600 << 20)
    assert MIN_CONTEXT_TOKENS <= capped < 32768
    assert planned_len(1 << 40, max_model_len=8192) == 8192
