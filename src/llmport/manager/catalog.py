"""The names a server answers to, and the model file behind each."""

from __future__ import annotations

from pathlib import Path

from llmport.errors import InvalidParameter
from llmport.store.embedded import EMBEDDED_MODEL_NAME
from llmport.store.refs import ModelSources, resolve_model
from llmport.store.registry import Registry


class Catalog:
    """Aliases (``--served-model-name``) first, then what the store resolves.

    Several names may lead to one file; the manager loads each file once.
    """

    def __init__(
        self,
        cache_dir: Path,
        aliases: dict[str, Path] | None = None,
        sources: ModelSources | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.aliases = dict(aliases or {})
        self.sources = sources or ModelSources()

    def resolve(self, name: str) -> Path:
        """The GGUF file for ``name``; raises ModelNotFound. May assemble the embedded model."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameter("model must be a non-empty string", param="model")
        alias = self.aliases.get(name)
        if alias is not None:
            return alias
        return resolve_model(name, self.cache_dir, self.sources)

    def names(self) -> list[str]:
        """What ``/v1/models`` lists besides loaded models: aliases, the embedded
        default, every registered (pulled, copied, created) name, the models folder's."""
        registered = [record.name for record in Registry(self.cache_dir).list()]
        folder = self.sources.names()
        return list(dict.fromkeys([*self.aliases, EMBEDDED_MODEL_NAME, *registered, *folder]))
