"""``--engine auto|llama.cpp|vllm``: which engine loads this server's models.

``auto`` goes by format: GGUF files to llama.cpp, safetensors models to vLLM. A forced
engine decides where a name could go to either (``hf.co/org/name`` with both a pulled
GGUF and the repo's safetensors in the Hugging Face cache; a pull of a repo holding both),
and a model the forced engine cannot load is refused with a one-line reason naming the
flag: at start for the models the command line names, 400 (``param: model``) for a
request's. It is a server setting, as vLLM's and Ollama's users choose an engine by the
server they start, not per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmport.errors import UnsupportedOption
from llmport.models.spec import ModelSpec

_DESCRIBED = {"gguf": "a GGUF file", "hf": "a Hugging Face safetensors model"}
_HINTS = {
    "gguf": "llmport's vLLM engine loads safetensors models (vLLM's CPU build cannot load "
    "GGUF); serve it with --engine auto or llama.cpp",
    "hf": "llama.cpp loads GGUF files: pull a GGUF repo of the model, or serve it with "
    "--engine auto or vllm",
}


class EngineChoice(BaseSettings):
    """The ``--engine`` flag (serve lists it in its own panel)."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="forbid", frozen=True)

    engine: Literal["auto", "llama.cpp", "vllm"] = Field(
        default="auto",
        description="Which engine loads models: auto (GGUF files on llama.cpp, safetensors "
        "models on vLLM), llama.cpp or vllm (every model on it; where a name leads to both "
        "formats, the files it loads; a model it cannot load is refused).",
    )

    @property
    def kind_name(self) -> str | None:
        """The engine registry's name for the forced kind; None for auto."""
        return None if self.engine == "auto" else self.engine.replace(".", "_")


@dataclass(frozen=True)
class ForcedEngine:
    """A forced engine as the resolver applies it: the flag's value and the formats that
    engine kind loads (the registry's, so they are told in one place)."""

    flag: str
    formats: frozenset[str]

    @property
    def prefers_hf(self) -> bool:
        return "hf" in self.formats and "gguf" not in self.formats

    def check(self, spec: ModelSpec) -> ModelSpec:
        """``spec``, or UnsupportedOption when this engine cannot load its format."""
        if spec.format in self.formats:
            return spec
        raise UnsupportedOption(
            f"--engine {self.flag}: model {spec.name!r} is {_DESCRIBED[spec.format]}, which "
            f"{self.flag} cannot load ({_HINTS[spec.format]})",
            param="model",
        )
