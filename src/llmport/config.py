"""Settings, one class per concern, each readable from ``LLMPORT_*`` variables.

Bad values fail here, at start-up, not on the first request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmport.errors import UnsupportedOption

#: llama.cpp's LLAMA_MAX_SEQ.
MAX_SLOTS = 256

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
        "trained context, shrunk to fit the memory budget.",
    )
    max_num_kv_tokens: int | None = Field(
        default=None,
        ge=16,
        description="KV cache cells shared by all sequences (llama.cpp n_ctx with a unified "
        "cache); default: max_model_len, or the trained context fitted to the memory budget.",
    )
    max_num_seqs: int = Field(
        default=16, ge=1, le=128, description="Sequences decoded at once; more wait."
    )
    max_num_batched_tokens: int = Field(
        default=512, ge=16, description="Tokens per llama_decode call (llama.cpp n_batch/n_ubatch)."
    )
    num_threads: int | None = Field(
        default=None, ge=1, description="CPU threads; default: the CPUs this process may use."
    )
    kv_cache_dtype: str = Field(
        default="auto",
        description="KV cache element type (auto = f16; the quantized ones need flash "
        "attention): " + ", ".join(sorted(set(KV_CACHE_DTYPES))) + ".",
    )
    n_gpu_layers: int | None = Field(
        default=None,
        ge=-1,
        description="Layers offloaded to the GPU, 0 for none; default (or -1): all when "
        "llama.cpp has a GPU. A positive count needs a llama.cpp build with a GPU.",
    )
    enable_prefix_caching: bool = Field(
        default=True, description="Reuse the KV of shared prompt prefixes across requests."
    )
    num_prefix_cache_slots: int | None = Field(
        default=None,
        ge=0,
        description="Slots beyond max_num_seqs kept for finished sequences' reusable "
        "prefixes (needs prefix caching); default: half of max_num_seqs, at least 2, with "
        "a unified KV cache; one spare stream per sequence (a stream costs a whole context; "
        "idle streams hold prefixes too). llama.cpp's 256 sequences cap max_num_seqs plus "
        "these.",
    )
    repack_weights: bool = Field(
        default=True,
        description="Let llama.cpp repack quantized weights for this CPU's fastest kernels "
        "at load (faster prompts; a load takes longer and the weights are copied out of "
        "the file's page cache).",
    )
    kv_layout: Literal["auto", "unified", "per-seq"] = Field(
        default="auto",
        description="llama.cpp's KV cache: one pool of cells all sequences share "
        "(unified), or one stream per sequence (per-seq: faster with many long "
        "sequences, a whole context of cells per slot); auto: per-seq when several "
        "sequences run, max_model_len is at most 8192 and the streams fit the memory budget.",
    )
    seed: int = Field(
        default=0,
        description="Seeds the generator that gives each request without a seed its own "
        "(restarted whenever a model loads).",
    )
    flash_attn: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="llama.cpp flash attention; a quantized KV cache needs auto or on.",
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

    @property
    def num_prefix_slots(self) -> int:
        """Sequence slots kept for cached prefixes (finished sequences' KV)."""
        if not self.enable_prefix_caching:
            return 0
        if self.num_prefix_cache_slots is not None:
            return self.num_prefix_cache_slots
        if self.kv_layout == "per-seq":
            return 0  # a stream costs a whole context: idle streams hold the cache
        return max(2, self.max_num_seqs // 2)

    @property
    def num_slots(self) -> int:
        """llama.cpp sequence ids (and output rows) the engine uses: running + cached."""
        return min(MAX_SLOTS, self.max_num_seqs + self.num_prefix_slots)


#: Web pages that may always call the server from a browser: loopback, any port (a
#: page on this machine is its user's, as Ollama's default origins say).
DEFAULT_ALLOWED_ORIGINS = tuple(
    f"{scheme}://{host}:*"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "[::1]")
)
_ORIGIN_ENTRY = re.compile(r"^(\*|https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}|\*))?)$")

#: Tool-call output formats ``--tool-call-parser`` accepts (vLLM's names).
TOOL_CALL_PARSERS = ("hermes", "llama3_json", "mistral", "pythonic")


class ServerSettings(BaseSettings):
    """``llmport serve``'s own flags, by vLLM's names where vLLM has one."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="ignore", frozen=True)

    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on (LLMPORT_HOST may carry the port too: 0.0.0.0:8080).",
    )
    port: int = Field(default=11434, ge=0, le=65535, description="Port (Ollama's by default).")
    api_key: str | None = Field(
        default=None,
        description="Require 'Authorization: Bearer KEY' on every route but /health; "
        "default: no key.",
    )
    served_model_name: list[str] = Field(
        default_factory=list,
        description="Names the preloaded models answer to: several for one model, or one per "
        "model in order; default: the names they were given.",
    )
    chat_template: str | None = Field(
        default=None,
        description="A Jinja2 chat template (a file path or the template itself) for the "
        "models named on the command line (every model when none is named); default: "
        "each GGUF's own.",
    )
    tool_call_parser: str | None = Field(
        default=None,
        description="How tool calls are read out of answers: "
        + ", ".join(TOOL_CALL_PARSERS)
        + "; default: hermes.",
    )
    reasoning_parser: Literal["deepseek_r1", "qwen3"] | None = Field(
        default=None,
        description="How reasoning is told apart from the answer (returned apart in every "
        "API): deepseek_r1 or qwen3 (<think>...</think>); default: picked from each model's "
        "chat template where it is unambiguous, else none.",
    )
    enable_auto_tool_choice: bool = Field(
        default=False,
        description="vLLM's switch for parsing tool calls out of answers; accepted and "
        "changes nothing, as auto tool choice is always on (tools a request offers are "
        "always parsed).",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Web pages (origins) that may call the server from a browser (CORS) "
        "besides loopback ones (always allowed, any port), one per flag: "
        "https://app.example:3000, http://host:* (any port), or * (any page; answered as *, "
        "never echoed); others get 403. Default: loopback pages only.",
    )
    allowed_media_domains: list[str] = Field(
        default_factory=list,
        description="Hosts whose http(s) image URLs requests may name (fetched by the "
        "server), one per flag: images.example.com; default: none, so images come as data "
        "URLs or base64 and the server fetches nothing a client names.",
    )
    models_dir: Path | None = Field(
        default=None,
        description="Serve every GGUF under this folder by its relative name without "
        "'.gguf' (a.gguf: a, sub/b.gguf: sub/b), loaded on demand; default: none.",
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

    @field_validator("allowed_origins")
    @classmethod
    def _origin_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _ORIGIN_ENTRY.match(entry.strip().rstrip("/")):
                raise UnsupportedOption(
                    f"--allowed-origins {entry!r}: give an origin (scheme://host[:port]), "
                    "scheme://host:* for any port, or *",
                    param="allowed_origins",
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
