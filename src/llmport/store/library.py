"""The store's verbs, as ``list``, ``show``, ``cp``, ``create``, ``rm`` and ``pull`` need them.

Every name a user may type gets a ``ModelRecord``: registered names from the
registry, the embedded default and local ``.gguf`` paths synthesized on the fly, so
``show`` and ``cp`` work the same on all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmport.errors import InvalidParameter, LlmportError, ModelNotFound
from llmport.store.embedded import EMBEDDED_MODEL_NAME, EMBEDDED_SHA256
from llmport.store.gguf_info import GGUFInfo, read_gguf_info
from llmport.store.hf_cache import find_model_folder, is_inside, remove_folder, repo_id_of
from llmport.store.hf_ref import is_hf_ref, parse_hf_ref
from llmport.store.modelfile import Modelfile
from llmport.store.pull import ProgressCallback, metadata_of, pull
from llmport.store.refs import ModelSources, find_record, is_embedded, resolve_model
from llmport.store.registry import ModelFile, ModelRecord, Registry, normalize_name


class Library:
    """The models under one ``LLMPORT_HOME``."""

    def __init__(
        self,
        home: Path,
        sources: ModelSources | None = None,
        read_info: Callable[[Path], GGUFInfo] = read_gguf_info,
        prefer_safetensors: bool = False,
    ) -> None:
        self.home = home
        self.sources = sources or ModelSources()
        self.registry = Registry(home)
        self._read_info = read_info
        #: Pull a repo's safetensors where it also has GGUF files (``--engine vllm``).
        self.prefer_safetensors = prefer_safetensors

    def record(self, name: str) -> ModelRecord:
        """The record behind any name a user may type; ModelNotFound otherwise."""
        found = find_record(name, self.home)
        if found is not None:
            return found
        path = resolve_model(name, self.home, self.sources)  # ModelNotFound with a hint.
        if is_embedded(name):
            return _file_record(EMBEDDED_MODEL_NAME, self._read_info(path), EMBEDDED_SHA256)
        return _file_record(name, self._read_info(path))

    def list(self) -> list[ModelRecord]:
        """Registered models, newest first, then the embedded default, then the models
        folder's."""
        records = self.registry.list()
        if not any(r.name == EMBEDDED_MODEL_NAME for r in records):
            records.append(self.record(EMBEDDED_MODEL_NAME))
        names = {r.name for r in records}
        for name in self.sources.names():
            if name not in names:
                with contextlib.suppress(LlmportError):  # A broken file is not listed.
                    records.append(self.record(name))
        return records

    def pull(self, ref: str, report: ProgressCallback | None = None) -> ModelRecord:
        if not is_hf_ref(ref):
            if is_embedded(ref):
                return self.record(ref)  # Shipped with llmport: nothing to fetch.
            raise InvalidParameter(
                f"cannot pull {ref!r}: pull hf.co/USER/REPO[:QUANT] references", param="model"
            )
        return pull(ref, self.registry, report, prefer_safetensors=self.prefer_safetensors)

    def put(self, record: ModelRecord, name: str) -> ModelRecord:
        """Register ``record`` (its files and settings) under ``name``."""
        record.name = normalize_name(name)
        return self.registry.put(record)

    def create(
        self, name: str, modelfile: Modelfile, base: ModelRecord | None = None
    ) -> ModelRecord:
        """A new name: FROM's files (``base``: FROM already resolved) with the Modelfile's
        settings on top."""
        base = base or self.record(modelfile.from_)
        base.name = normalize_name(name)
        base.source = modelfile.from_
        base.parameters = {**base.parameters, **modelfile.parameters}
        base.template = modelfile.template or base.template
        base.system = modelfile.system if modelfile.system is not None else base.system
        base.license = modelfile.license or base.license
        base.messages = list(modelfile.messages) or base.messages
        return self.registry.put(base)

    def delete(self, name: str) -> ModelRecord:
        """Unregister ``name``; pulled files no other name uses are deleted too. A pulled
        safetensors model (``hf.co/org/name`` or ``org/name``) has no record: its folder in
        the Hugging Face cache goes."""
        if is_embedded(name) and self.registry.get(EMBEDDED_MODEL_NAME) is None:
            raise InvalidParameter(f"{name!r} is embedded in llmport and cannot be removed")
        key = parse_hf_ref(name).name if is_hf_ref(name) else name
        record = self.registry.get(key)
        if record is None:
            return self._delete_cached(name)
        self.registry.remove(record.name)
        if record.source.startswith("hf.co/"):
            for file in record.files:
                if not self.registry.is_file_used(file.path):
                    _delete_pulled(Path(file.path))
        return record

    def _delete_cached(self, name: str) -> ModelRecord:
        """Remove the Hugging Face cache's repo folder of the safetensors model ``name``;
        refused while a registered name (a GGUF pull of the repo) uses files in it."""
        folder = find_model_folder(name)
        if folder is None:
            raise ModelNotFound(f"model {name!r} not found", param="model")
        users = [r.name for r in self.registry.list() if is_inside(folder, r)]
        if users:
            raise InvalidParameter(
                f"cannot remove {name!r}: {', '.join(users)} use files in its Hugging Face "
                "cache folder; remove those first",
                param="model",
            )
        remove_folder(folder)
        return ModelRecord(f"hf.co/{repo_id_of(name)}", str(folder), [], {"format": "safetensors"})


def _file_record(name: str, info: GGUFInfo, sha256: str | None = None) -> ModelRecord:
    path = info.path
    stat = path.stat()
    digest = sha256 or _digest_hint(path, stat.st_size, stat.st_mtime)
    return ModelRecord(
        name=name,
        source=str(path),
        files=[ModelFile(str(path), digest, stat.st_size)],
        metadata=metadata_of(info),
        license=[info.license] if info.license else [],
        modified=stat.st_mtime,
    )


def _digest_hint(path: Path, size: int, mtime: float) -> str:
    """A stable id for an unregistered file without hashing gigabytes on every list."""
    return hashlib.sha256(f"{path.resolve()}:{size}:{mtime}".encode()).hexdigest()


def _delete_pulled(link: Path) -> None:
    """Remove a snapshot link and the blob it points to (Hugging Face cache layout)."""
    blob = link.resolve()
    link.unlink(missing_ok=True)
    if blob.parent.name == "blobs":
        blob.unlink(missing_ok=True)
        for stale in (blob.with_name(blob.name + ".lock"),):
            stale.unlink(missing_ok=True)


def details(record: ModelRecord) -> dict[str, Any]:
    """Ollama's ``details`` object for a record."""
    meta = record.metadata
    family = str(meta.get("architecture", ""))
    return {
        "parent_model": "",
        "format": str(meta.get("format") or "gguf"),
        "family": family,
        "families": [family] if family else None,
        "parameter_size": _parameter_size(int(meta.get("num_params", 0) or 0)),
        "quantization_level": str(meta.get("quant") or meta.get("quantization", "")),
    }


def _parameter_size(num_params: int) -> str:
    if num_params >= 1_000_000_000:
        return f"{num_params / 1e9:.1f}B"
    return f"{num_params / 1e6:.0f}M"
