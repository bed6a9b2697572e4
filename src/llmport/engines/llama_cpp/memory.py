"""The llama.cpp kind's memory planner: what a GGUF model will cost before it is loaded,
and the context it gets under a budget. One formula both plans the budget (the
manager) and sizes the engine (the planned config is what the worker allocates).

The estimate is meant as an upper bound. Sliding-window layers are counted the way
llama.cpp sizes them (the window per sequence plus a micro-batch, with a unified cache)
for the architectures whose layer pattern is known; any other layer gets the full
context.
"""

from __future__ import annotations

import logging

from llmport.config import EngineConfig
from llmport.engine.registry import MemoryEstimate, MiB, Plan
from llmport.errors import InvalidModelFile
from llmport.models.spec import ModelSpec
from llmport.store.gguf_info import GGUFInfo

logger = logging.getLogger(__name__)

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
#: The smallest context the planner shrinks a model to before calling it too large.
MIN_CONTEXT_TOKENS = 2048


def plan(spec: ModelSpec, config: EngineConfig, budget_bytes: int) -> Plan:
    """The engine config for this model and what it costs: the trained context unless
    max_model_len is set, shrunk only as far as the budget demands."""
    info = spec.gguf
    if info is None:
        raise InvalidModelFile(f"{spec.name}: the llama.cpp engine needs a GGUF file")
    kv_type = config.kv_ggml_type_name
    wanted = config.max_num_kv_tokens or config.max_model_len or info.context_length

    def estimate(num_tokens: int) -> MemoryEstimate:
        return estimate_memory(
            info, num_tokens, kv_type, config.num_slots, config.max_num_batched_tokens
        )

    memory = estimate(wanted)
    if memory.total_bytes > budget_bytes and config.max_model_len is None:
        low, high = MIN_CONTEXT_TOKENS, wanted  # The largest context that fits.
        while low < high:
            middle = (low + high + 1) // 2
            if estimate(middle).total_bytes <= budget_bytes:
                low = middle
            else:
                high = middle - 1
        wanted = low
        memory = estimate(wanted)
        logger.warning(
            "%s: context capped at %d tokens by the memory budget (trained for %d)",
            info.path.name,
            wanted,
            info.context_length,
        )
    max_model_len = min(wanted, config.max_model_len or wanted)
    planned = config.model_copy(
        update={"max_model_len": max_model_len, "max_num_kv_tokens": wanted}
    )
    return Plan(planned, memory)


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
