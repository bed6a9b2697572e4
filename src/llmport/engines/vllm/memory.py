"""The vLLM kind's memory planner: an HF model's cost before it loads, and its sizes.

Weights come from the safetensors headers (scaled to the dtype vLLM will run), the KV
cache from the config (layers x KV heads x head size, K and V) for the context. On a
CPU vLLM takes its KV cache in whole GiB (``VLLM_CPU_KVCACHE_SPACE``), so the plan rounds
up to that; on a GPU the planned bytes become vLLM's ``kv_cache_memory_bytes``, so several
models share one device, each with its own share. The planned config carries
``kv_cache_bytes`` to the worker.
"""

from __future__ import annotations

import logging
import math

from llmport.engine.registry import MemoryEstimate, MiB, Plan
from llmport.engines.vllm.config import VllmConfig, device
from llmport.errors import InvalidModelFile
from llmport.models.hf import HFInfo
from llmport.models.spec import ModelSpec

logger = logging.getLogger(__name__)

GiB = 1 << 30
#: A vLLM worker's own cost beyond weights and KV: Python, torch, vLLM, its buffers
#: (measured on the CPU build: about 1.1 GiB resident for a tiny model).
VLLM_OVERHEAD_BYTES = 1280 * MiB
#: Bytes per element by vLLM's dtype names.
DTYPE_BYTES = {"half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4}
KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "float16": 2, "bfloat16": 2}
#: The smallest context the planner shrinks a model to before calling it too large.
MIN_CONTEXT_TOKENS = 2048


def plan(spec: ModelSpec, config: VllmConfig, budget_bytes: int) -> Plan:
    """The trained context unless ``max_model_len`` is set, shrunk only as far as the
    budget demands (as the llama.cpp kind does); the KV cache holds one full context."""
    info = spec.hf
    if info is None:
        raise InvalidModelFile(f"{spec.name}: the vLLM engine needs a Hugging Face model folder")
    on_device = device()
    dtype = run_dtype(info, config.dtype, on_device)
    wanted = config.max_model_len or info.context_length or MIN_CONTEXT_TOKENS

    def estimate(num_tokens: int) -> MemoryEstimate:
        return estimate_memory(info, config, dtype, num_tokens, on_device)

    memory = estimate(wanted)
    if memory.total_bytes > budget_bytes and config.max_model_len is None:
        low, high = min(MIN_CONTEXT_TOKENS, wanted), wanted
        while low < high:
            middle = (low + high + 1) // 2
            if estimate(middle).total_bytes <= budget_bytes:
                low = middle
            else:
                high = middle - 1
        wanted = low
        memory = estimate(wanted)
        logger.warning("%s: context capped at %d tokens by the memory budget (trained for %d)",
                       spec.name, wanted, info.context_length)  # fmt: skip
    planned = config.model_copy(
        update={"max_model_len": wanted, "dtype": dtype, "kv_cache_bytes": memory.kv_bytes}
    )
    return Plan(planned, memory)


def run_dtype(info: HFInfo, dtype: str, on_device: str) -> str:
    """The dtype vLLM will run: as asked, else on a CPU the checkpoint's own (vLLM's CPU
    default, bfloat16, takes AMX kernels that some virtual machines advertise but trap),
    else vLLM's choice (``auto``)."""
    if dtype != "auto" or on_device != "cpu":
        return dtype
    own = info.torch_dtype.removeprefix("torch.")
    return own if own in DTYPE_BYTES else "auto"


def kv_bytes_per_token(info: HFInfo, kv_cache_dtype: str, dtype: str) -> int:
    element = KV_DTYPE_BYTES.get(kv_cache_dtype) or DTYPE_BYTES.get(dtype, 2)
    return 2 * info.num_layers * info.num_kv_heads * info.head_dim * element


def estimate_memory(
    info: HFInfo, config: VllmConfig, dtype: str, num_tokens: int, on_device: str
) -> MemoryEstimate:
    """Weights at the run dtype + a KV cache for ``num_tokens`` + activations + vLLM."""
    element = DTYPE_BYTES.get(dtype)
    weights = sum(
        count if element is None or name not in ("F32", "F16", "BF16")
        else count // (4 if name == "F32" else 2) * element
        for name, count in info.weight_bytes.items()
    )  # fmt: skip
    kv = kv_bytes_per_token(info, config.kv_cache_dtype, dtype) * num_tokens
    if on_device == "cpu":  # vLLM's CPU build takes its KV cache in whole GiB.
        kv = max(1, math.ceil(kv / GiB)) * GiB
    batch = config.max_num_batched_tokens or 2048
    compute = 4 * (config.max_num_seqs * info.vocab_size + 16 * batch * info.hidden_size)
    num_kv_tokens = kv // max(1, kv_bytes_per_token(info, config.kv_cache_dtype, dtype))
    return MemoryEstimate(weights, kv, compute + 64 * MiB, num_kv_tokens, VLLM_OVERHEAD_BYTES)
