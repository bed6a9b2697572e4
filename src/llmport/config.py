"""Settings, one class per concern, each readable from ``LLMPORT_*`` variables.

Bad values fail here, at start-up, not on the first request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmport.errors import UnsupportedOption

#: KV cache element types llama.cpp offers, by the names users type.
KV_CACHE_DTYPES: dict[str, str] = {
    "auto": "f16",
    "f16": "f16",
    "fp16": "f16",
    "float16": "f16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "f32": "f32",
    "fp32": "f32",
    "float32": "f32",
    "q8_0": "q8_0",
    "q5_1": "q5_1",
    "q5_0": "q5_0",
    "q4_1": "q4_1",
    "q4_0": "q4_0",
    "iq4_nl": "iq4_nl",
}


class EngineConfig(BaseSettings):
    """How one model's engine is sized. ``None`` means "derive from the model"."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="forbid", frozen=True)

    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Longest sequence (prompt + output) in tokens; default: the model's "
        "trained context, capped by memory.",
    )
    max_num_kv_tokens: int | None = Field(
        default=None,
        ge=16,
        description="KV cache cells shared by all sequences (llama.cpp n_ctx with a unified "
        "cache); default: max_model_len.",
    )
    max_num_seqs: int = Field(default=16, ge=1, le=128, description="Sequences decoded at once.")
    max_num_batched_tokens: int = Field(
        default=512, ge=16, description="Tokens per llama_decode call (llama.cpp n_batch/n_ubatch)."
    )
    num_threads: int | None = Field(
        default=None, ge=1, description="CPU threads; default: the CPUs this process may use."
    )
    kv_cache_dtype: str = Field(
        default="auto",
        description="KV cache element type: " + ", ".join(sorted(set(KV_CACHE_DTYPES))) + ".",
    )
    n_gpu_layers: int | None = Field(
        default=None,
        ge=-1,
        description="Layers offloaded to the GPU; default (or -1): all when llama.cpp has a GPU.",
    )
    enable_prefix_caching: bool = Field(
        default=True, description="Reuse the KV of shared prompt prefixes across requests."
    )
    num_prefix_cache_slots: int | None = Field(
        default=None,
        ge=0,
        description="Finished sequences kept as reusable prefixes; default: max_num_seqs // 2.",
    )
    seed: int = Field(default=0, description="Seed for requests that set none.")
    flash_attn: Literal["auto", "on", "off"] = Field(
        default="auto", description="llama.cpp flash attention (needed for quantized V cache)."
    )

    @field_validator("kv_cache_dtype")
    @classmethod
    def _known_kv_dtype(cls, value: str) -> str:
        name = value.lower()
        if name not in KV_CACHE_DTYPES:
            offered = ", ".join(sorted(set(KV_CACHE_DTYPES)))
            hint = " (fp8 KV caches are a vLLM/GPU feature)" if name.startswith("fp8") else ""
            raise UnsupportedOption(
                f"kv_cache_dtype {value!r} is not offered by llama.cpp{hint}; choose one of: "
                f"{offered}",
                param="kv_cache_dtype",
            )
        return name

    @property
    def kv_ggml_type_name(self) -> str:
        return KV_CACHE_DTYPES[self.kv_cache_dtype]
