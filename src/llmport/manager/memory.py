"""What a model will cost in memory before it is loaded, and the budget it must fit.

The estimate is meant as an upper bound. Sliding-window layers are counted the way
llama.cpp sizes them (the window per sequence plus a micro-batch, with a unified cache)
for the architectures whose layer pattern is known; any other layer gets the full
context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmport.backends.memory import available_memory_bytes
from llmport.store.gguf_info import GGUFInfo

MiB = 1 << 20
GiB = 1 << 30
#: An engine worker's own cost: the interpreter, numpy, llama.cpp and its buffers.
WORKER_OVERHEAD_BYTES = 160 * MiB
#: Bytes per KV element by llama.cpp type (block formats include their scales).
KV_ELEMENT_BYTES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
#: The default budget: this share of the memory available when the server starts.
DEFAULT_BUDGET_SHARE = 0.8

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    num_kv_tokens: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + WORKER_OVERHEAD_BYTES


#: Every n-th layer attends to the whole context, the others to a sliding window, as
#: llama.cpp's models set it (``load_swa_pattern``) when the GGUF does not say.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "gemma-embedding": 6, "cohere2": 4,
                "gpt-oss": 2, "exaone4": 4, "olmo2": 4, "llama4": 4}  # fmt: skip


def kv_bytes(info: GGUFInfo, num_kv_tokens: int, kv_type: str, num_seqs: int, batch: int) -> int:
    """The KV cache llama.cpp allocates for ``num_kv_tokens`` cells shared by ``num_seqs``."""
    per_layer_token = kv_bytes_per_token(info, kv_type) / max(1, info.block_count)
    num_full, num_swa = _layer_split(info)
    swa_cells = num_kv_tokens
    if num_swa and info.sliding_window:
        padded = -(-(info.sliding_window * num_seqs + batch) // 256) * 256
        swa_cells = min(num_kv_tokens, padded)
    return int(per_layer_token * (num_full * num_kv_tokens + num_swa * swa_cells))


def _layer_split(info: GGUFInfo) -> tuple[int, int]:
    """(full-attention layers, sliding-window layers)."""
    pattern = info.metadata.get(f"{info.architecture}.attention.sliding_window_pattern")
    if not isinstance(pattern, int) or isinstance(pattern, bool) or pattern < 1:
        pattern = SWA_PATTERNS.get(info.architecture, 1)
    if not info.sliding_window or pattern <= 1:
        return info.block_count, 0
    num_full = sum(1 for layer in range(info.block_count) if layer % pattern == pattern - 1)
    return num_full, info.block_count - num_full


def kv_bytes_per_token(info: GGUFInfo, kv_type: str) -> float:
    """K and V for one token across every layer (0 for attention-free architectures)."""
    if not info.head_count:
        return 0.0
    head_dim = _head_dim(info)
    num_kv_heads = info.head_count_kv or info.head_count
    return 2.0 * info.block_count * head_dim * num_kv_heads * KV_ELEMENT_BYTES[kv_type]


def _head_dim(info: GGUFInfo) -> int:
    arch = info.architecture
    for key in (f"{arch}.attention.key_length", f"{arch}.attention.value_length"):
        value = info.metadata.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return info.embedding_length // max(1, info.head_count or 1)


def estimate_memory(
    info: GGUFInfo, num_kv_tokens: int, kv_type: str, num_outputs: int, batch_size: int
) -> MemoryEstimate:
    """Weights (the file's tensors, mmap'd) + KV cache + llama.cpp's compute buffers."""
    weights = sum(t.num_bytes for t in info.tensors)
    kv = kv_bytes(info, num_kv_tokens, kv_type, num_outputs, batch_size)
    vocab = info.vocab_size or 0
    # Logits rows for every output, plus activations of one micro-batch.
    compute = 4 * (num_outputs * vocab + 16 * batch_size * info.embedding_length) + 32 * MiB
    return MemoryEstimate(weights, kv, compute, num_kv_tokens)


def default_budget_bytes() -> int:
    return int(DEFAULT_BUDGET_SHARE * available_memory_bytes())


def parse_size(text: str) -> int:
    """Bytes from ``"8GiB"``, ``"512M"``, ``"1.5g"`` or a plain byte count (powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use bytes or a unit: 512MiB, 8GiB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def format_size(num_bytes: int) -> str:
    return f"{num_bytes / GiB:.2f} GiB" if num_bytes >= GiB else f"{num_bytes / MiB:.0f} MiB"
