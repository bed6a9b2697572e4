"""Turn what a user typed as a model (a name, a path, nothing) into a GGUF file path."""

from __future__ import annotations

from pathlib import Path

from llmport.errors import ModelNotFound
from llmport.store.embedded import EMBEDDED_MODEL_NAME, embedded_model_path

EMBEDDED_ALIASES = frozenset({"", "default", EMBEDDED_MODEL_NAME, "gemma3:270m-q4_k_m"})
HUGGING_FACE_PREFIXES = ("hf.co/", "huggingface.co/", "https://hf.co/", "https://huggingface.co/")


def resolve_model(ref: str | None, cache_dir: Path) -> Path:
    """The GGUF file for ``ref``: the embedded model when no model is named, else a local path."""
    name = (ref or "").strip()
    if name.lower() in EMBEDDED_ALIASES:
        return embedded_model_path(cache_dir)
    if name.lower().startswith(HUGGING_FACE_PREFIXES):
        raise ModelNotFound(
            f"model {name!r}: pulling from Hugging Face is not supported yet; "
            "pass a path to a local .gguf file",
            param="model",
        )
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.absolute()
    raise ModelNotFound(_not_found_message(name, path), param="model")


def _not_found_message(name: str, path: Path) -> str:
    if path.is_dir():
        return f"model {name!r} is a folder; pass the path of a .gguf file inside it"
    if path.is_file():
        return f"model {name!r} is not a .gguf file"
    if path.suffix.lower() == ".gguf" or "/" in name or "\\" in name:
        return f"model file {str(path)!r} does not exist"
    return (
        f"model {name!r} not found; use {EMBEDDED_MODEL_NAME!r} (the embedded default) "
        "or a path to a .gguf file"
    )
