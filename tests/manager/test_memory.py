"""Memory estimates and sizes."""

from pathlib import Path

import pytest

from llmport.manager.memory import estimate_memory, format_size, kv_bytes_per_token, parse_size
from llmport.store.gguf_info import read_gguf_info


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("512MiB", 512 << 20), ("8G", 8 << 30), ("1.5gib", 3 << 29), ("2k", 2048)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "8 GB of RAM"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(3 << 29) == "1.50 GiB"
    assert format_size(300 << 20) == "300 MiB"


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
