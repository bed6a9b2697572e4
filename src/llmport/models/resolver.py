"""The resolver: the one place a model name becomes a ModelSpec.

In order: an alias (``--served-model-name``, leading to what the command line named);
the embedded default; a registered name (pulled, copied, created); a name under the
models folder; a filesystem path, where the server accepts paths. Every route of
both dialects and the manager ask here, off the event loop (registry lookups and
GGUF header reads are disk work), so a name means the same thing everywhere.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from llmport.errors import InvalidParameter
from llmport.models.spec import ModelSpec
from llmport.store.embedded import EMBEDDED_MODEL_NAME
from llmport.store.gguf_info import GGUFInfo, read_gguf_info
from llmport.store.library import Library
from llmport.store.refs import ModelSources, find_record, is_embedded
from llmport.store.registry import ModelRecord

#: GGUF headers kept (keyed by path, size and mtime, so an edited file is read again).
MAX_CACHED_HEADERS = 64


class Resolver:
    """Thread-safe: ``resolve`` runs in worker threads."""

    def __init__(
        self,
        home: Path,
        aliases: dict[str, str] | None = None,
        sources: ModelSources | None = None,
    ) -> None:
        self.home = home
        self.aliases = dict(aliases or {})
        self.sources = sources or ModelSources()
        self.library = Library(home, self.sources, read_info=self.gguf_info)
        # What the command line named is trusted: paths allowed whatever clients may do.
        trusted = ModelSources(self.sources.models_dir, allow_paths=True)
        self._trusted = Library(home, trusted, read_info=self.gguf_info)
        self._headers: dict[tuple[str, int, int], GGUFInfo] = {}
        self._lock = threading.Lock()

    async def resolve(self, name: str) -> ModelSpec:
        """``resolve_now`` in a thread."""
        return await asyncio.to_thread(self.resolve_now, name)

    def resolve_now(self, name: str) -> ModelSpec:
        """The spec for ``name``; raises ModelNotFound (with a hint) or InvalidModelFile."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameter("model must be a non-empty string", param="model")
        target = self.aliases.get(name)
        if target is not None:
            return self._spec(name, self._trusted.record(target), "alias")
        record = find_record(name, self.home)
        if record is not None:
            return self._spec(name, record, "registry")
        record = self.library.record(name)  # Embedded, models folder or path (if allowed).
        if is_embedded(name):
            return self._spec(name, record, "embedded")
        in_folder = self.sources.in_models_dir(name) is not None
        return self._spec(name, record, "models_dir" if in_folder else "path")

    def names(self) -> list[str]:
        """Every name worth listing: aliases, the embedded default, registered names, and
        the models folder's."""
        registered = [r.name for r in self.library.registry.list()]
        folder = self.sources.names()
        return list(dict.fromkeys([*self.aliases, EMBEDDED_MODEL_NAME, *registered, *folder]))

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
