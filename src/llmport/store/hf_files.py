"""Which files of a safetensors repository a pull fetches, so vLLM and transformers load it.

The config, generation config, tokenizer, processor and chat-template files at the
repo's root, its Python files (for ``--trust-remote-code`` models; fetching runs nothing)
and the safetensors weights: the shards the index names where there is an index (a
``consolidated.safetensors`` beside the shards is a duplicate vLLM would skip too), else
every root ``*.safetensors``. Never ``*.bin``, ``*.pt``, ``*.pth``, ``*.h5`` or ``*.msgpack``
copies of the same weights, nor GGUF files, nor subfolders (``original/``...).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmport.errors import PullFailed

WEIGHTS_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".safetensors.index.json"
#: Root files besides the weights: configs and tokenizers (json, sentencepiece, tiktoken,
#: merges), chat templates, remote code.
_SIDE_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken", ".py")


def is_safetensors_repo(filenames: list[str]) -> bool:
    """A root ``config.json`` and at least one root ``*.safetensors``."""
    root = {name for name in filenames if "/" not in name}
    return "config.json" in root and any(name.endswith(WEIGHTS_SUFFIX) for name in root)


def side_files(filenames: list[str]) -> list[str]:
    """Everything but the weights that loading needs (the index among them)."""
    return sorted(
        name for name in filenames if "/" not in name and name.lower().endswith(_SIDE_SUFFIXES)
    )


def weight_files(filenames: list[str], indexes: list[Path]) -> list[str]:
    """The shards the indexes name (each must be listed), else every root safetensors."""
    root = sorted(n for n in filenames if "/" not in n and n.endswith(WEIGHTS_SUFFIX))
    if not indexes:
        return root
    named: set[str] = set()
    for index in indexes:
        named |= _shards(index)
    missing = sorted(named - set(root))
    if missing:
        raise PullFailed(f"the weight index names files the repo does not have: {missing[:3]}")
    return sorted(named)


def _shards(index: Path) -> set[str]:
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise PullFailed(f"{index.name}: not a safetensors index ({error})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise PullFailed(f"{index.name}: its weight_map is not an object of file names")
    return set(weight_map.values())
