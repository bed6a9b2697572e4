"""The manager's settings, readable from ``LLMPORT_*`` variables; bad values fail at start."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmport.manager.keep_alive import parse_keep_alive
from llmport.sizes import parse_size


class ManagerSettings(BaseSettings):
    """How the server shares memory between models (Ollama's scheduler knobs)."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="ignore", frozen=True)

    keep_alive: str = Field(
        default="5m",
        description="How long an idle model stays loaded: a duration (5m, 1h), 0 = unload "
        "when idle, negative = forever. Requests may override it. Models named on serve's "
        "command line stay loaded unless --keep-alive is given there.",
    )
    max_loaded_models: int = Field(
        default=3, ge=0, description="Most models loaded at once; 0 = as many as memory allows."
    )
    max_queue: int = Field(
        default=512,
        ge=0,
        description="Requests per model that may wait beyond max_num_seqs; more get 503.",
    )
    memory_budget: str | None = Field(
        default=None,
        description="Memory all loaded models may use (512MiB, 8GiB); default: 80% of the "
        "memory available at start.",
    )
    warm_spare: bool = Field(
        default=True, description="Keep a spare worker process started so swaps only load."
    )

    @field_validator("keep_alive")
    @classmethod
    def _valid_keep_alive(cls, value: str) -> str:
        parse_keep_alive(value)
        return value

    @field_validator("memory_budget")
    @classmethod
    def _valid_budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value
