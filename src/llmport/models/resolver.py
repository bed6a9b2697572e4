"""The resolver: the one place a model name becomes a ModelSpec.

In order: an alias (``--served-model-name``, leading to what the command line named);
the embedded default; a registered name (pulled, copied, created); a Hugging Face model
(a local folder with ``config.json`` and safetensors, where paths are accepted, or a
repository id cached by the Hugging Face hub), marked ``hf`` for the vLLM engine; a name
under the models folder; a filesystem path, where the server accepts paths. Every route of
both dialects and the manager ask here, off the event loop (registry lookups and
GGUF header reads are disk work), so a name means the same thing everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from pathlib import Path

from llmport.errors import InvalidParameter, LlmportError, ModelNotFound
from llmport.models.engine_choice import ForcedEngine
from llmport.models.hf import HFInfo, cached_repo_ids, find_hf_folder, read_hf_info, repo_id_of
from llmport.models.spec import ModelSpec
from llmport.store.embedded import EMBEDDED_MODEL_NAME
from llmport.store.gguf_info import GGUFInfo, read_gguf_info
from llmport.store.library import Library
from llmport.store.refs import ModelSources, find_record, is_embedded
from llmport.store.registry import ModelFile, ModelRecord

#: GGUF headers kept (keyed by path, size and mtime, so an edited file is read again).
MAX_CACHED_HEADERS = 64
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Resolver:
    """Thread-safe: ``resolve`` runs in worker threads."""

    def __init__(
        self,
        home: Path,
        aliases: dict[str, str] | None = None,
        sources: ModelSources | None = None,
        forced: ForcedEngine | None = None,
    ) -> None:
        self.home = home
        self.aliases = dict(aliases or {})
        self.sources = sources or ModelSources()
        self.forced = forced
        prefers_hf = forced is not None and forced.prefers_hf
        self.library = Library(home, self.sources, read_info=self.gguf_info,
                               prefer_safetensors=prefers_hf)  # fmt: skip
        # What the command line named is trusted: paths allowed whatever clients may do.
        trusted = ModelSources(self.sources.models_dir, allow_paths=True)
        self._trusted = Library(home, trusted, read_info=self.gguf_info)
        self._headers: dict[tuple[str, int, int], GGUFInfo] = {}
        self._hf_infos: dict[tuple[str, int], HFInfo] = {}
        self._lock = threading.Lock()

    async def resolve(self, name: str) -> ModelSpec:
        """``resolve_now`` in a thread."""
        return await asyncio.to_thread(self.resolve_now, name)

    def resolve_now(self, name: str) -> ModelSpec:
        """The spec for ``name``; raises ModelNotFound (with a hint), InvalidModelFile, or
        UnsupportedOption where ``--engine`` forces an engine that cannot load it."""
        spec = self._resolve(name)
        return spec if self.forced is None else self.forced.check(spec)

    def _resolve(self, name: str) -> ModelSpec:
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameter("model must be a non-empty string", param="model")
        target = self.aliases.get(name)
        if target is not None:
            folder = find_hf_folder(target, allow_paths=True)
            if folder is not None:
                return self._hf_spec(name, folder, "alias")
            return self._spec(name, self._trusted.record(target), "alias")
        record = find_record(name, self.home)
        prefers_hf = self.forced is not None and self.forced.prefers_hf
        if record is not None and not prefers_hf:
            return self._spec(name, record, "registry")
        folder = find_hf_folder(name, self.sources.allow_paths)
        if folder is not None:  # Where a GGUF pull is registered too: vLLM was forced.
            return self._hf_spec(name, folder, "path" if os.path.isdir(name) else "hf_cache")
        if record is not None:
            return self._spec(name, record, "registry")
        try:  # Embedded, models folder or path (if allowed).
            record = self.library.record(name)
        except ModelNotFound:
            repo = repo_id_of(name)
            if repo is None or os.path.exists(name):
                raise
            raise ModelNotFound(
                f"model {name!r} not found: neither a registered name nor a Hugging Face "
                f"repository in the local cache (download it first: hf download {repo})",
                param="model",
            ) from None
        if is_embedded(name):
            return self._spec(name, record, "embedded")
        in_folder = self.sources.in_models_dir(name) is not None
        return self._spec(name, record, "models_dir" if in_folder else "path")

    def names(self) -> list[str]:
        """Every name worth listing: aliases, the embedded default, registered names, the
        models folder's, and the Hugging Face cache's models (``hf.co/org/name``)."""
        registered = [r.name for r in self.library.registry.list()]
        folder = self.sources.names()
        cached = [f"hf.co/{repo}" for repo in cached_repo_ids()]
        return list(
            dict.fromkeys([*self.aliases, EMBEDDED_MODEL_NAME, *registered, *folder, *cached])
        )

    def hf_cache_records(self) -> list[ModelRecord]:
        """A record (format ``safetensors``) for each model in the Hugging Face cache, as
        ``list`` shows them; a folder that cannot be read is left out."""
        records = []
        for repo in cached_repo_ids():
            folder = find_hf_folder(repo, allow_paths=False)
            if folder is not None:
                with contextlib.suppress(LlmportError, OSError):
                    records.append(self._hf_spec(f"hf.co/{repo}", folder, "hf_cache").record)
        return records

    def gguf_info(self, path: Path) -> GGUFInfo:
        """The header of ``path``, read once per version of the file."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            found = self._headers.get(key)
        if found is None:
            found = read_gguf_info(path)
            with self._lock:
                if len(self._headers) >= MAX_CACHED_HEADERS:
                    self._headers.pop(next(iter(self._headers)))
                self._headers[key] = found
        return found

    def hf_info(self, folder: Path) -> HFInfo:
        """A Hugging Face folder's config and headers, read once per version of config.json."""
        key = (str(folder), (folder / "config.json").stat().st_mtime_ns)
        with self._lock:
            found = self._hf_infos.get(key)
        if found is None:
            found = read_hf_info(folder)
            with self._lock:
                if len(self._hf_infos) >= MAX_CACHED_HEADERS:
                    self._hf_infos.pop(next(iter(self._hf_infos)))
                self._hf_infos[key] = found
        return found

    def _hf_spec(self, name: str, folder: Path, source: str) -> ModelSpec:
        info = self.hf_info(folder)
        files = [ModelFile(str(p), _blob_sha256(p), p.stat().st_size) for p in info.safetensors]
        record = ModelRecord(
            name=name,
            source=str(folder),
            files=files,
            metadata={
                "format": "safetensors",
                "architecture": info.architecture,
                "context_length": info.context_length,
                "embedding_length": info.hidden_size,
                "num_params": info.num_params,
                "chat_template": info.chat_template or "",
                "quantization": info.torch_dtype,
            },
            modified=(folder / "config.json").stat().st_mtime,
        )
        return ModelSpec(name=name, format="hf", weight_files=(folder,), source=source,
                         record=record, hf=info)  # fmt: skip

    def _spec(self, name: str, record: ModelRecord, source: str) -> ModelSpec:
        path = record.path
        return ModelSpec(
            name=name,
            format="gguf",
            weight_files=(path,),
            source=source,
            record=record,
            gguf=self.gguf_info(path),
        )


def _blob_sha256(path: Path) -> str:
    """A file's sha256 where the Hugging Face cache names its blob by it (else "")."""
    name = path.resolve().name
    return name if _SHA256.match(name) else ""
