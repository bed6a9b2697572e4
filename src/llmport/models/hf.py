"""Hugging Face model folders (``config.json`` + safetensors): found, and read without loading.

A name is an HF model when it is a local folder with ``config.json`` and ``*.safetensors``
files, or a repository id (``org/name``, ``hf.co/org/name``) whose snapshot is in the
Hugging Face cache. What the planner and the chat layer need (layers, KV heads, the
trained context, the tokenizer's chat template, the weights' bytes by type) comes from the
JSON files and the safetensors headers alone.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmport.errors import InvalidModelFile

#: Bytes per element of safetensors dtypes.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip
#: A safetensors header larger than this is refused (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 100 << 20
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HFInfo:
    """What a folder's files say about its model."""

    folder: Path
    architecture: str
    context_length: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    #: The checkpoint's own dtype (``float32``, ``bfloat16``...), "" when unstated.
    torch_dtype: str
    #: Safetensors bytes by element type (``{"F32": 1234}``).
    weight_bytes: dict[str, int]
    num_params: int
    chat_template: str | None
    safetensors: tuple[Path, ...]
    config: dict[str, Any] = field(repr=False)

    @property
    def total_weight_bytes(self) -> int:
        return sum(self.weight_bytes.values())


def is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def repo_id_of(name: str) -> str | None:
    """``org/name`` for ``org/name`` or ``hf.co/org/name`` (no ``:quant``), else None."""
    repo = name.removeprefix("hf.co/").removeprefix("huggingface.co/")
    return repo if _REPO_ID.match(repo) else None


def find_hf_folder(name: str, allow_paths: bool) -> Path | None:
    """The folder ``name`` leads to: a local folder (where paths are allowed), else the
    cached snapshot of a repository id; None when it is neither."""
    if allow_paths:
        path = Path(os.path.expanduser(name))
        try:
            if path.is_dir() and is_hf_folder(path):
                return path.absolute()
        except OSError:  # a name no file system holds (too long, say): not a folder
            pass
    repo = repo_id_of(name)
    if repo is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json")
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    return folder if is_hf_folder(folder) else None


def cached_repo_ids() -> list[str]:
    """Repository ids whose current snapshot (``refs/main``) in the Hugging Face cache is a
    model folder: what ``pull``, ``hf download`` or vLLM itself left there."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    found = []
    for repo in sorted(cache.glob("models--*--*")):
        try:
            commit = (repo / "refs" / "main").read_text().strip()
            if commit and "/" not in commit and is_hf_folder(repo / "snapshots" / commit):
                found.append(repo.name.removeprefix("models--").replace("--", "/", 1))
        except OSError:  # A repo without refs/main, or one another process is writing.
            continue
    return [repo for repo in found if _REPO_ID.match(repo)]


def read_hf_info(folder: Path) -> HFInfo:
    """Read ``config.json``, the tokenizer's config and every safetensors header."""
    config = _json(folder / "config.json")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    model = {**config, **(text or {})}
    num_heads = _int(model, "num_attention_heads", 1)
    hidden = _int(model, "hidden_size", 0)
    files = tuple(sorted(folder.glob("*.safetensors")))
    by_type: dict[str, int] = {}
    num_params = 0
    for path in files:
        for dtype, count in _tensor_counts(path).items():
            by_type[dtype] = by_type.get(dtype, 0) + count * DTYPE_BYTES.get(dtype, 2)
            num_params += count
    return HFInfo(
        folder=folder,
        architecture=str(model.get("model_type") or ""),
        context_length=_int(model, "max_position_embeddings", 0),
        num_layers=_int(model, "num_hidden_layers", 0),
        num_kv_heads=_int(model, "num_key_value_heads", num_heads),
        head_dim=_int(model, "head_dim", 0) or hidden // max(1, num_heads),
        hidden_size=hidden,
        vocab_size=_int(model, "vocab_size", 0),
        torch_dtype=str(config.get("torch_dtype") or config.get("dtype") or ""),
        weight_bytes=by_type,
        num_params=num_params,
        chat_template=_chat_template(folder),
        safetensors=files,
        config=config,
    )


def _chat_template(folder: Path) -> str | None:
    """The tokenizer's template: ``chat_template.jinja``, else tokenizer_config.json's."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    tokenizer_config = folder / "tokenizer_config.json"
    if not tokenizer_config.is_file():
        return None
    found = _json(tokenizer_config).get("chat_template")
    if isinstance(found, list):  # Named variants: the default one.
        named = {t.get("name"): t.get("template") for t in found if isinstance(t, dict)}
        found = named.get("default")
    return found if isinstance(found, str) and found else None


def _tensor_counts(path: Path) -> dict[str, int]:
    """Elements by dtype, from the header alone (8-byte length, then JSON)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise InvalidModelFile(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise InvalidModelFile(f"{path}: safetensors header of {length} bytes is invalid")
        try:
            header = json.loads(file.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidModelFile(f"{path}: safetensors header is not JSON: {error}") from None
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__" or not isinstance(tensor, dict):
            continue
        count = 1
        for dim in tensor.get("shape", []):
            count *= int(dim)
        dtype = str(tensor.get("dtype", ""))
        counts[dtype] = counts.get(dtype, 0) + count
    return counts


def _json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidModelFile(f"{path}: cannot read it as JSON: {error}") from None
    if not isinstance(found, dict):
        raise InvalidModelFile(f"{path}: not a JSON object")
    return found


def _int(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default
