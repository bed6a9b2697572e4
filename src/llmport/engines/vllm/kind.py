"""The vLLM engine kind: Hugging Face models (``hf`` specs) on vLLM, in a worker process.

``plan`` runs in the server (pure Python over config.json and the safetensors headers);
``create`` runs in the worker and is the only place vLLM is imported. A spare worker
does not import vLLM ahead of a load: torch and vLLM cost a second of CPU and most of a
GiB, which every GGUF load would pay for nothing.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from llmport.engine.protocol import EngineInfo, WorkerEngine
from llmport.engine.registry import EngineKind, LoadTarget, Plan
from llmport.engines.vllm.config import VllmConfig, device, is_installed
from llmport.engines.vllm.memory import GiB, plan
from llmport.errors import ModelLoadFailed, UnsupportedOption
from llmport.models.spec import ModelSpec

logger = logging.getLogger(__name__)

VLLM_NAME = "vllm"


def plan_if_installed(spec: ModelSpec, config: VllmConfig, budget_bytes: int) -> Plan:
    """The planner, once vLLM is known to be installed (a clear 400 where it is not)."""
    if not is_installed():
        raise UnsupportedOption(
            f"model {spec.name!r} is a Hugging Face model, served by vLLM, which is not "
            "installed here (pip install 'llmport[vllm]')",
            param="model",
        )
    return plan(spec, config, budget_bytes)


def create(target: LoadTarget, config: Any) -> WorkerEngine:
    """Load the folder with vLLM in this (worker) process."""
    assert isinstance(config, VllmConfig)  # The registry's contract, not user input.
    on_device = device()
    # In this process: the worker is the model's own process (and a daemon: it may not
    # start vLLM's engine-core process).
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if on_device == "cpu":
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(math.ceil((config.kv_cache_bytes or GiB) / GiB))
    try:
        from vllm.engine.arg_utils import EngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine
    except ImportError as error:
        raise ModelLoadFailed(
            f"Hugging Face models need vLLM (pip install 'llmport[vllm]'): {error}"
        ) from None
    args = EngineArgs(**engine_args(target.weight_files[0], config, on_device))
    try:
        engine = LLMEngine.from_engine_args(args)
    except (ValueError, RuntimeError, OSError, NotImplementedError) as error:
        raise ModelLoadFailed(f"vLLM could not load {target.weight_files[0]}: {error}") from None
    from llmport.engines.vllm.engine import VllmEngine

    return VllmEngine(engine, _info(engine, config, on_device))


def engine_args(folder: str, config: VllmConfig, on_device: str) -> dict[str, Any]:
    """vLLM's EngineArgs for the planned config (None: vLLM's default)."""
    args: dict[str, Any] = {
        "model": folder,
        "dtype": config.dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "pipeline_parallel_size": config.pipeline_parallel_size,
        "quantization": config.quantization,
        "enforce_eager": config.enforce_eager,
        "trust_remote_code": config.trust_remote_code,
        "max_model_len": config.max_model_len,
        "max_num_seqs": config.max_num_seqs,
        "max_num_batched_tokens": config.max_num_batched_tokens,
        "kv_cache_dtype": config.kv_cache_dtype,
        "enable_prefix_caching": config.enable_prefix_caching,
        "seed": config.seed,
        "disable_log_stats": True,
    }
    if on_device != "cpu":
        if config.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = config.gpu_memory_utilization
        else:  # The planned share: several models fit one GPU, each with its own KV.
            args["kv_cache_memory_bytes"] = config.kv_cache_bytes
        args["enable_sleep_mode"] = True
    return {k: v for k, v in args.items() if v is not None}


def _info(engine: Any, config: VllmConfig, on_device: str) -> EngineInfo:
    vllm_config = engine.vllm_config
    cache = vllm_config.cache_config
    tokenizer = engine.get_tokenizer()
    return EngineInfo(
        vocab_size=max(len(tokenizer), int(vllm_config.model_config.get_vocab_size())),
        max_model_len=int(vllm_config.model_config.max_model_len),
        num_kv_tokens=int((cache.num_gpu_blocks or 0) * cache.block_size),
        max_num_seqs=int(vllm_config.scheduler_config.max_num_seqs),
        bos_token=str(getattr(tokenizer, "bos_token", None) or ""),
        eos_token=str(getattr(tokenizer, "eos_token", None) or ""),
        kind=VLLM_NAME,
        device=on_device,
        # Sleep mode needs a GPU (vLLM's CPU build says "not supported on this platform").
        sleep_levels=[] if on_device == "cpu" else [1, 2],
        **_images(vllm_config.model_config),
    )


def _images(model_config: Any) -> dict[str, Any]:
    """Whether the model takes images, and the placeholder vLLM's own server writes for
    each (the model class's ``get_placeholder_str``); numbered where the model numbers
    them (``<|image_1|>``: ``{n}`` here)."""
    if not model_config.is_multimodal_model:
        return {}
    mm_config = model_config.multimodal_config
    if mm_config is not None and mm_config.get_limit_per_prompt("image") == 0:
        return {}
    from vllm.model_executor.model_loader import get_model_cls

    model_class = get_model_cls(model_config)
    try:
        first = model_class.get_placeholder_str("image", 1) or ""
        second = model_class.get_placeholder_str("image", 2) or ""
    except ValueError:  # "Only video modality is supported"...
        return {}
    numbered = first.replace("1", "{n}")
    placeholder = first if first == second else numbered
    return {"takes_images": True, "image_placeholder": placeholder}


VLLM = EngineKind(
    name=VLLM_NAME,
    formats=frozenset({"hf"}),
    config_class=VllmConfig,
    plan=plan_if_installed,
    create=create,
    uses_spare=False,
)
