"""Settings, one class per concern, each readable from ``LLMPORT_*`` variables.

Bad values fail here, at start-up, not on the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
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


#: Tool-call output formats ``--tool-call-parser`` accepts (vLLM's names).
TOOL_CALL_PARSERS = ("hermes", "llama3_json", "mistral", "pythonic")


class ServerSettings(BaseSettings):
    """``llmport serve``'s own flags, by vLLM's names where vLLM has one."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=11434, ge=0, le=65535, description="Port (Ollama's by default).")
    api_key: str | None = Field(
        default=None, description="Require 'Authorization: Bearer KEY' on every route but /health."
    )
    served_model_name: list[str] = Field(
        default_factory=list, description="Names the preloaded model answers to."
    )
    dtype: str = Field(default="auto", description="Weights keep the GGUF's types: only 'auto'.")
    tensor_parallel_size: int = Field(default=1, description="Only 1: a model runs in one process.")
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="Share of GPU memory (needs a GPU build)."
    )
    enable_auto_tool_choice: bool = Field(default=False, description="Let models call tools.")
    chat_template: str | None = Field(
        default=None,
        description="A Jinja2 chat template (a file path or the template itself) for the "
        "models named on the command line (every model when none is named).",
    )
    tool_call_parser: str | None = Field(
        default=None, description="Tool-call format: " + ", ".join(TOOL_CALL_PARSERS) + "."
    )
    models_dir: Path | None = Field(
        default=None,
        description="Serve every GGUF under this folder by its relative name without "
        "'.gguf' (a.gguf: a, sub/b.gguf: sub/b), loaded on demand.",
    )
    allow_model_paths: bool | None = Field(
        default=None,
        description="Load a .gguf file a request names by path; default: only when the "
        "server listens on loopback alone.",
    )
    shutdown_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds in-flight requests may take to finish after SIGTERM or Ctrl-C; "
        "then they end with an error.",
    )

    @property
    def accepts_model_paths(self) -> bool:
        """Paths from clients: as set, else only when nothing but this machine can ask."""
        if self.allow_model_paths is not None:
            return self.allow_model_paths
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @model_validator(mode="before")
    @classmethod
    def _host_may_carry_a_port(cls, data: Any) -> Any:
        """``LLMPORT_HOST=0.0.0.0:8080`` works as ``OLLAMA_HOST`` does (an explicit port
        wins)."""
        if isinstance(data, dict) and isinstance(data.get("host"), str):
            host = data["host"].removeprefix("http://")
            if host.count(":") == 1:
                name, _, port = host.partition(":")
                data = {**data, "host": name or "127.0.0.1"}
                data.setdefault("port", port)
        return data

    @field_validator("dtype")
    @classmethod
    def _auto_dtype(cls, value: str) -> str:
        if value != "auto":
            raise UnsupportedOption(
                f"--dtype {value}: GGUF weights run in the types they were quantized to; "
                "pick another GGUF file (Q8_0, F16, BF16) instead",
                param="dtype",
            )
        return value

    @field_validator("tensor_parallel_size")
    @classmethod
    def _one_process(cls, value: int) -> int:
        if value != 1:
            raise UnsupportedOption(
                f"--tensor-parallel-size {value}: the llama.cpp backend runs each model in "
                "one process (it offloads layers to one GPU with n_gpu_layers)",
                param="tensor_parallel_size",
            )
        return value

    @field_validator("tool_call_parser")
    @classmethod
    def _known_parser(cls, value: str | None) -> str | None:
        if value is not None and value not in TOOL_CALL_PARSERS:
            raise UnsupportedOption(
                f"--tool-call-parser {value}: choose one of {', '.join(TOOL_CALL_PARSERS)}",
                param="tool_call_parser",
            )
        return value


class RequestLimits(BaseSettings):
    """Per-request limits (``LLMPORT_*``); the defaults fit any model llama.cpp runs."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="ignore", frozen=True)

    max_request_bytes: int = Field(
        default=8 << 20, ge=1024, description="Largest request body in bytes; larger get 413."
    )
    max_n: int = Field(default=128, ge=1, description="Most choices (n) one request may ask.")
    max_prompt_chars: int = Field(
        default=1_000_000,
        ge=1,
        description="Most characters (or token ids) in one prompt, or in all of a chat's "
        "messages, checked before tokenizing.",
    )
    max_prompts: int = Field(
        default=2048,
        ge=1,
        description="Most prompts in one completion, or inputs in one embedding request.",
    )
    max_messages: int = Field(default=4096, ge=1, description="Most messages in one chat.")
