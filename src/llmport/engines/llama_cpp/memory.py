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
#: ``--kv-layout auto`` gives each slot its own stream up to this context. Beyond it a
#: stream per slot costs (slots x context) cells, most of them idle; a unified cache
#: shares one context's cells among all sequences.
PER_SEQ_MAX_CONTEXT = 8192
#: Streams beyond ``max_num_seqs`` by default per sequence: one keeps a shared system
#: prompt that a sliding-window model's finished sequences no longer hold (a stream of
#: Gemma 3 270M at 4,096 tokens: 27 MiB).
PER_SEQ_SPARE_STREAMS = 1


def plan(spec: ModelSpec, config: EngineConfig, budget_bytes: int) -> Plan:
    """The engine config for this model and what it costs: the KV layout, and the trained
    context unless max_model_len is set, shrunk only as far as the budget demands."""
    info = spec.gguf
    if info is None:
        raise InvalidModelFile(f"{spec.name}: the llama.cpp engine needs a GGUF file")
    if config.kv_layout == "per-seq" or (
        config.kv_layout == "auto" and _per_seq_suits(info, config, budget_bytes)
    ):
        return _plan(info, _per_seq(config), budget_bytes)
    return _plan(info, config.model_copy(update={"kv_layout": "unified"}), budget_bytes)


def _per_seq_suits(info: GGUFInfo, config: EngineConfig, budget_bytes: int) -> bool:
    """Auto: streams when several sequences run, each stream is short, and all fit."""
    context = config.max_model_len or info.context_length
    if config.max_num_seqs == 1 or config.max_num_kv_tokens or context > PER_SEQ_MAX_CONTEXT:
        return False
    return _estimate(info, _per_seq(config), context).total_bytes <= budget_bytes


def _per_seq(config: EngineConfig) -> EngineConfig:
    """Streams per sequence, and (unless the count is set) ``PER_SEQ_SPARE_STREAMS`` more
    that keep prefixes running prompts share (the scheduler's ``_keep_prefix``)."""
    update: dict[str, object] = {"kv_layout": "per-seq"}
    if config.enable_prefix_caching and config.num_prefix_cache_slots is None:
        update["num_prefix_cache_slots"] = PER_SEQ_SPARE_STREAMS
    return config.model_copy(update=update)


def _plan(info: GGUFInfo, config: EngineConfig, budget_bytes: int) -> Plan:
    """Size a config whose layout is settled. ``context`` is what the search shrinks: the
    shared cells of a unified cache, or each stream's length per sequence."""
    per_seq = config.kv_layout == "per-seq"
    if per_seq and config.max_num_kv_tokens:
        wanted = config.max_num_kv_tokens // config.num_slots
    else:
        wanted = config.max_num_kv_tokens or config.max_model_len or info.context_length
    memory = _estimate(info, config, wanted)
    if memory.total_bytes > budget_bytes and config.max_model_len is None:
        low, high = min(MIN_CONTEXT_TOKENS, wanted), wanted  # The largest context that fits.
        while low < high:
            middle = (low + high + 1) // 2
            if _estimate(info, config, middle).total_bytes <= budget_bytes:
                low = middle
            else:
                high = middle - 1
        wanted = low
        memory = _estimate(info, config, wanted)
        logger.warning(
            "%s: context capped at %d tokens by the memory budget (trained for %d)",
            info.path.name,
            wanted,
            info.context_length,
        )
    max_model_len = min(wanted, config.max_model_len or wanted)
    total = stream_cells(wanted) * config.num_slots if per_seq else wanted
    planned = config.model_copy(update={"max_model_len": max_model_len, "max_num_kv_tokens": total})
    return Plan(planned, memory)


def _estimate(info: GGUFInfo, config: EngineConfig, context: int) -> MemoryEstimate:
    return estimate_memory(
        info,
        context,
        config.kv_ggml_type_name,
        config.num_slots,
        config.max_num_batched_tokens,
        per_seq=config.kv_layout == "per-seq",
    )


def stream_cells(num_tokens: int) -> int:
    """llama.cpp rounds a per-sequence stream up to a multiple of 256 cells."""
    return -(-num_tokens // 256) * 256


#: Every n-th layer attends to the whole context, the others to a sliding window, as
#: llama.cpp's models set it (``load_swa_pattern``) when the GGUF does not say.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "gemma-embedding": 6, "cohere2": 4,
                "gpt-oss": 2, "exaone4": 4, "olmo2": 4, "llama4": 4}  # fmt: skip


def kv_bytes(
    info: GGUFInfo, context: int, kv_type: str, num_seqs: int, batch: int, per_seq: bool = False
) -> int:
    """The KV cache llama.cpp allocates: ``context`` cells shared by ``num_seqs``, or per
    sequence a stream of ``context`` cells for each (sliding-window layers keep only
    their window plus a micro-batch, per stream)."""
    per_layer_token = kv_bytes_per_token(info, kv_type) / max(1, info.block_count)
    num_full, num_swa = _layer_split(info)
    num_streams = num_seqs if per_seq else 1
    cells = stream_cells(context) if per_seq else context
    swa_cells = cells
    if num_swa and info.sliding_window:
        window = info.sliding_window * (1 if per_seq else num_seqs)
        swa_cells = min(cells, stream_cells(window + batch))
    return int(per_layer_token * num_streams * (num_full * cells + num_swa * swa_cells))


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
    info: GGUFInfo,
    context: int,
    kv_type: str,
    num_outputs: int,
    batch_size: int,
    per_seq: bool = False,
) -> MemoryEstimate:
    """Weights (the file's tensors, mmap'd) + KV cache + llama.cpp's compute buffers."""
    weights = sum(t.num_bytes for t in info.tensors)
    kv = kv_bytes(info, context, kv_type, num_outputs, batch_size, per_seq)
    num_kv_tokens = stream_cells(context) * num_outputs if per_seq else context
    vocab = info.vocab_size or 0
    # Logits rows for every output, plus activations of one micro-batch.
    compute = 4 * (num_outputs * vocab + 16 * batch_size * info.embedding_length) + 32 * MiB
    return MemoryEstimate(weights, kv, compute, num_kv_tokens)
