"""Pulled safetensors models in the Hugging Face cache, found by name for ``rm``.

Such a pull registers nothing: the cache is its only store, so removing the model means
removing its ``models--ORG--NAME`` folder there. The name goes through the same strict
parse as a pull's, and the folder must be a real folder (not a link) directly inside the
cache, holding the model ``list`` shows, before anything is deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from llmport.errors import InvalidParameter
from llmport.store.hf_ref import is_hf_ref, parse_hf_ref
from llmport.store.registry import ModelRecord


def repo_id_of(name: str) -> str | None:
    """``org/name`` for ``hf.co/org/name`` or ``org/name`` (no quant tag), else None."""
    try:
        ref = parse_hf_ref(name if is_hf_ref(name) else f"hf.co/{name}")
    except InvalidParameter:
        return None
    return ref.repo_id if ref.quant is None else None


def find_model_folder(name: str) -> Path | None:
    """The repo folder of the model ``name`` stands for, where the cache holds one as
    ``list`` shows it (``refs/main``'s snapshot has config.json and safetensors)."""
    repo_id = repo_id_of(name)
    if repo_id is None:
        return None
    from huggingface_hub import constants  # Not at import: the server starts without it.

    cache = Path(constants.HF_HUB_CACHE)
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    try:
        if folder.is_symlink() or not folder.is_dir():
            return None
        if folder.resolve().parent != cache.resolve():
            return None
        commit = (folder / "refs" / "main").read_text().strip()
        if not commit or "/" in commit or commit in {".", ".."}:
            return None
        snapshot = folder / "snapshots" / commit
        if (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors")):
            return folder
    except OSError:  # Unreadable, or being written by another process: not a model here.
        return None
    return None


def is_inside(folder: Path, record: ModelRecord) -> bool:
    """Whether any of ``record``'s files lies in ``folder`` (a GGUF pull of the same repo)."""
    root = folder.resolve()
    return any(Path(file.path).resolve().is_relative_to(root) for file in record.files)


def remove_folder(folder: Path) -> None:
    """Delete a folder ``find_model_folder`` returned (links inside are not followed)."""
    shutil.rmtree(folder)
