"""Turn what a user typed as a model (a name, a path, nothing) into a GGUF file path.

In order: the embedded default's names; a registered name (pulled ``hf.co/...``
models, ``cp`` and ``create`` names); a name under the models folder
(``--models-dir``: ``sub/b`` is ``DIR/sub/b.gguf``); a path to a local ``.gguf``
file, where the server accepts paths from its clients (``ModelSources``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmport.errors import InvalidParameter, ModelNotFound
from llmport.store.embedded import EMBEDDED_MODEL_NAME, embedded_model_path
from llmport.store.hf_ref import is_hf_ref, parse_hf_ref
from llmport.store.registry import ModelRecord, Registry

EMBEDDED_ALIASES = frozenset(
    {"", "default", EMBEDDED_MODEL_NAME, "gemma3:270m-q4_k_m", "gemma3:270m-latest"}
)


@dataclass(frozen=True)
class ModelSources:
    """Where a name from a client may lead besides the registry and the embedded model.

    ``allow_paths`` False refuses filesystem paths (a server others can reach must not
    load any ``.gguf`` on its disk on a client's say-so); ``models_dir`` serves every
    GGUF under it by its relative name without the extension.
    """

    models_dir: Path | None = None
    allow_paths: bool = True

    def names(self) -> list[str]:
        """The names the models folder offers, sorted."""
        if self.models_dir is None or not self.models_dir.is_dir():
            return []
        found = (p for p in self.models_dir.rglob("*") if p.suffix.lower() == ".gguf")
        return sorted(p.relative_to(self.models_dir).with_suffix("").as_posix() for p in found)

    def in_models_dir(self, name: str) -> Path | None:
        """``DIR/name.gguf`` when it exists and stays inside DIR (no ``..`` escapes)."""
        if self.models_dir is None or not name or name.startswith(("/", "~")):
            return None
        root = self.models_dir.absolute()
        # normpath, not resolve: files in the folder may be links (to the HF cache, say).
        path = Path(os.path.normpath(root / f"{name}.gguf"))
        if root not in path.parents or not os.path.isfile(path):
            return None
        return path


def is_embedded(ref: str | None) -> bool:
    return (ref or "").strip().lower() in EMBEDDED_ALIASES


def find_record(ref: str, cache_dir: Path) -> ModelRecord | None:
    """The registry's record for ``ref``, if it names a registered model."""
    name = ref.strip()
    if is_hf_ref(name):
        name = parse_hf_ref(name).name
    try:
        return Registry(cache_dir).get(name)
    except InvalidParameter:
        return None  # Not a name at all (a path, say).


def resolve_model(ref: str | None, cache_dir: Path, sources: ModelSources | None = None) -> Path:
    """The GGUF file for ``ref``: the embedded model when no model is named, else a
    registered name, a name under the models folder, or a local path (if allowed)."""
    sources = sources or ModelSources()
    name = (ref or "").strip()
    if is_embedded(name):
        return embedded_model_path(cache_dir)
    record = find_record(name, cache_dir)
    if record is not None:
        if not record.path.is_file():
            raise ModelNotFound(
                f"model {name!r} is registered but its file {record.path} is gone; pull or "
                "create it again",
                param="model",
            )
        return record.path
    if is_hf_ref(name):
        raise ModelNotFound(
            f"model {parse_hf_ref(name).name!r} not found; pull it first: llmport pull {name}",
            param="model",
        )
    in_dir = sources.in_models_dir(name)
    if in_dir is not None:
        return in_dir
    if not sources.allow_paths:
        raise ModelNotFound(
            f"model {name!r} not found (this server does not load files by path; its "
            "models are listed at /v1/models)",
            param="model",
        )
    # os.path, not Path: a client's name may be too long for the filesystem or name a
    # user that does not exist, and only os.path answers those with "no such file".
    path = Path(os.path.expanduser(name))
    if os.path.isfile(path) and path.suffix.lower() == ".gguf":
        return path.absolute()
    raise ModelNotFound(_not_found_message(name, path), param="model")


def _not_found_message(name: str, path: Path) -> str:
    if os.path.isdir(path):
        return f"model {name!r} is a folder; pass the path of a .gguf file inside it"
    if os.path.isfile(path):
        return f"model {name!r} is not a .gguf file"
    if path.suffix.lower() == ".gguf" or "/" in name or "\\" in name:
        return f"model file {str(path)!r} does not exist"
    return (
        f"model {name!r} not found; use {EMBEDDED_MODEL_NAME!r} (the embedded default) "
        "or a path to a .gguf file"
    )
