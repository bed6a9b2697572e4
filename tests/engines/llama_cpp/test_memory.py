"""The llama.cpp kind's memory planner: estimates against what llama.cpp allocates, and
the context it gives a model under a budget."""

import logging
import re
from pathlib import Path
from typing import Any

import pytest

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


def test_auto_layout_picks_streams_for_short_contexts_that_fit(
    gemma_model_path: Path, tmp_path: Path
) -> None:
    spec = Resolver(tmp_path).resolve_now(str(gemma_model_path))

    def planned(budget: int, **config: Any) -> EngineConfig:
        return plan(spec, EngineConfig(**config), budget).config

    short = planned(1 << 40, max_model_len=4096)
    # One spare stream beyond the 16 running ones keeps a shared prefix for the cache.
    assert short.kv_layout == "per-seq" and short.max_num_seqs == 16 and short.num_slots == 17
    assert short.max_num_kv_tokens == 17 * 4096
    assert planned(1 << 40, max_model_len=4096, num_prefix_cache_slots=0).num_slots == 16
    assert planned(1 << 40, max_model_len=4096, enable_prefix_caching=False).num_slots == 16
    # The trained 32k context, a single sequence, or a budget the streams outgrow: unified.
    assert planned(1 << 40).kv_layout == "unified"
    assert planned(1 << 40, max_model_len=4096, max_num_seqs=1).kv_layout == "unified"
    assert planned(400 << 20, max_model_len=4096).kv_layout == "unified"
    # Asked for, per-seq shrinks its streams to the budget like a unified context.
    forced = planned(1 << 30, kv_layout="per-seq")
    assert forced.kv_layout == "per-seq"
    assert forced.max_model_len is not None and forced.max_model_len >= MIN_CONTEXT_TOKENS
    assert forced.max_model_len < 32768
    assert plan(spec, EngineConfig(kv_layout="per-seq"), 1 << 30).memory.total_bytes <= 1 << 30


def test_per_seq_kv_estimate_matches_what_llama_cpp_allocates(
    gemma_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from llmport.engines.llama_cpp.backend import LlamaCppBackend

    info = read_gguf_info(gemma_model_path)
    config = EngineConfig(kv_layout="per-seq", max_model_len=1000, max_num_seqs=4)
    with caplog.at_level(logging.DEBUG, logger="llmport.llama_cpp"):
        backend = LlamaCppBackend(gemma_model_path, config)
    backend.close()
    sizes = [
        float(match.group(1))
        for record in caplog.records
        if (match := re.search(r"llama_kv_cache: size = +([0-9.]+) MiB", record.getMessage()))
    ]
    assert len(sizes) == 2  # the full-attention cache and the sliding-window one
    estimate = estimate_memory(info, 1000, "f16", 4, 512, per_seq=True)
    assert estimate.kv_bytes == int(sum(sizes) * 2**20)
    assert backend.kv_layout == "per_seq" and backend.max_model_len == 1000
