"""ModelSpec: everything a model name stands for, resolved once per request.

Every route of every dialect and the manager see a model through its spec: which
files to load (and so which engine kind serves it), the template and trained
context, the Modelfile's defaults and preset messages, what it can do, and the
store's record behind it (what ``show`` and ``tags`` print).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmport.models.hf import HFInfo
from llmport.store.gguf_info import GGUFInfo, is_reranker
from llmport.store.registry import ModelRecord

ModelFormat = Literal["gguf", "hf"]


@dataclass(frozen=True)
class ModelSpec:
    #: The name the client asked for (what responses and ``ps`` show).
    name: str
    format: ModelFormat
    weight_files: tuple[Path, ...]
    #: Where the name led: ``alias``, ``registry``, ``embedded``, ``models_dir`` or ``path``.
    source: str
    record: ModelRecord = field(repr=False)
    #: The GGUF header (the llama.cpp kind plans memory from it); None for other formats.
    gguf: GGUFInfo | None = field(default=None, repr=False)
    #: Vision projectors (mmproj files) that go with the weights.
    projector_files: tuple[Path, ...] = ()
    #: A Hugging Face folder's config and safetensors headers (the vLLM kind plans from
    #: them); None for GGUF. ``weight_files`` is then the folder itself.
    hf: HFInfo | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """What the manager loads once, however many names lead to it."""
        return str(self.weight_files[0])

    @property
    def fetch_ref(self) -> str:
        """What a machine without these files (a cluster node with a disk of its own)
        fetches them by: the Hub reference they were pulled by, the repo of a Hugging Face
        cache snapshot, or the embedded model; "" for files only this machine has."""
        if self.source == "embedded":
            return self.record.name
        if self.record.source.startswith("hf.co/"):  # hf.co/org/repo@commit[:quant]
            repo, _, rest = self.record.source.partition("@")
            _, colon, quant = rest.partition(":")
            return f"{repo}{colon}{quant}"
        for part in self.weight_files[0].parts:
            if part.startswith("models--"):  # The HF cache: models--org--name/snapshots/rev
                return "hf.co/" + part.removeprefix("models--").replace("--", "/", 1)
        return ""

    @property
    def architecture(self) -> str:
        return str(self.record.metadata.get("architecture", ""))

    @property
    def trained_context(self) -> int:
        return int(self.record.metadata.get("context_length") or 0)

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template (not a Modelfile's); None for a base model."""
        found = self.record.metadata.get("chat_template")
        return found if isinstance(found, str) and found else None

    @property
    def tool_use_template(self) -> str | None:
        """A GGUF's ``tokenizer.chat_template.tool_use`` variant, used when tools are offered."""
        if self.gguf is None:
            return None
        found = self.gguf.metadata.get("tokenizer.chat_template.tool_use")
        return found if isinstance(found, str) else None

    @property
    def template(self) -> str | None:
        """A Modelfile TEMPLATE (Jinja2 or Ollama's Go syntax) that overrides the model's."""
        return self.record.template

    @property
    def system(self) -> str | None:
        return self.record.system

    @property
    def parameters(self) -> dict[str, Any]:
        """Modelfile PARAMETERs, by Ollama's option names."""
        return self.record.parameters

    @property
    def messages(self) -> list[tuple[str, str]]:
        """Modelfile MESSAGEs: (role, content) pairs every chat starts with."""
        return self.record.messages

    @property
    def capabilities(self) -> list[str]:
        """Ollama's ``capabilities``: completion, and embedding on llama.cpp (a generative
        HF model on vLLM does not embed); tools and thinking by the template; a reranker
        only reranks."""
        if self.is_reranker:
            return ["rerank"]
        found = ["completion"] if self.format == "hf" else ["completion", "embedding"]
        template = self.template or self.chat_template or ""
        if "tools" in template or self.tool_use_template:
            found.append("tools")
        if "<think>" in template:
            found.append("thinking")
        return found

    @property
    def is_reranker(self) -> bool:
        """A GGUF reranker (rank pooling): it scores query and document pairs only."""
        return self.gguf is not None and is_reranker(self.gguf)

    @property
    def rerank_template(self) -> str | None:
        """How the GGUF lays out a pair (``{query}``, ``{document}``), if it says."""
        found = self.gguf.metadata.get("tokenizer.chat_template.rerank") if self.gguf else None
        return found if isinstance(found, str) else None
