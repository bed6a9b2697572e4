"""``hf.co/USER/REPO[:QUANT]`` references, and picking a repo's GGUF file(s) by quant tag.

Everything a user types is checked against strict patterns here, before any path is
built from it: nothing typed can reach outside the store's folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmport.errors import InvalidParameter, ModelNotFound

HF_PREFIXES = ("hf.co/", "huggingface.co/", "https://hf.co/", "https://huggingface.co/")
_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95})$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# A quant tag inside a file name: Q4_K_M, IQ4_XS, Q8_0, BF16, F16, MXFP4... bounded by
# a separator on the left and '.' or '-' on the right.
_QUANT = re.compile(
    r"(?:^|[-_.])((?:I?Q\d+(?:_[A-Z0-9]+)+)|BF16|F16|F32|MXFP4(?:_MOE)?|TQ\d_\d)(?=[-.])",
    re.IGNORECASE,
)
#: The default when no quant is named: Ollama's Q4_K_M, then the nearest sensible ones.
DEFAULT_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "IQ4_XS", "IQ4_NL", "Q5_K_M", "Q5_K_S", "Q6_K",
                  "Q8_0", "Q3_K_M", "Q3_K_L", "BF16", "F16", "F32")  # fmt: skip


@dataclass(frozen=True, slots=True)
class HfRef:
    repo_id: str
    quant: str | None  # None: the default quant

    @property
    def name(self) -> str:
        """The canonical name it is registered under (Ollama writes ``hf.co/...``)."""
        return f"hf.co/{self.repo_id}:{self.quant or 'latest'}"


def is_hf_ref(text: str) -> bool:
    return text.strip().lower().startswith(HF_PREFIXES)


def parse_hf_ref(text: str) -> HfRef:
    """Parse ``hf.co/USER/REPO[:QUANT]``; raise InvalidParameter for anything else."""
    body = text.strip()
    for prefix in HF_PREFIXES:
        if body.lower().startswith(prefix):
            body = body[len(prefix) :]
            break
    repo, _, tag = body.partition(":")
    parts = repo.split("/")
    if len(parts) != 2 or not all(_PART.match(p) and ".." not in p for p in parts):
        raise InvalidParameter(
            f"{text!r} is not a Hugging Face reference: expected hf.co/USER/REPO[:QUANT] "
            "with letters, digits, '.', '_' or '-' in USER and REPO",
            param="model",
        )
    if tag and (not _TAG.match(tag) or ".." in tag):
        raise InvalidParameter(f"{text!r}: {tag!r} is not a quant tag", param="model")
    quant = None if not tag or tag.lower() == "latest" else tag
    return HfRef("/".join(parts), quant)


def quant_of(filename: str) -> str | None:
    """The quant tag in a GGUF file name (upper case), or None."""
    match = _QUANT.search(_SPLIT.sub(".gguf", filename.rsplit("/", 1)[-1]))
    return match.group(1).upper() if match else None


def gguf_files(filenames: list[str]) -> dict[str, list[str]]:
    """Model GGUF files by quant tag; a split model's shards are listed in order."""
    found: dict[str, list[str]] = {}
    for name in sorted(filenames):
        base = name.rsplit("/", 1)[-1].lower()
        if not base.endswith(".gguf") or "mmproj" in base:
            continue
        key = quant_of(name) or _SPLIT.sub(".gguf", name)
        found.setdefault(key, []).append(name)
    return found


def choose_files(ref: HfRef, filenames: list[str]) -> tuple[str, list[str]]:
    """(quant, files to fetch) for ``ref``; ModelNotFound lists the quants the repo has."""
    files = gguf_files(filenames)
    if not files:
        raise ModelNotFound(
            f"{ref.repo_id} has no GGUF files"
            + ("" if ref.quant else " (nor safetensors weights with a config.json)"),
            param="model",
        )
    if ref.quant is None:
        quant = next((q for q in DEFAULT_QUANTS if q in files), sorted(files)[0])
    else:
        quant = ref.quant.upper()
        if quant not in files:
            raise ModelNotFound(
                f"{ref.repo_id} has no {ref.quant} file; it has: {', '.join(sorted(files))}",
                param="model",
            )
    shards = files[quant]
    _check_shards(ref, quant, shards)
    return quant, shards


def _check_shards(ref: HfRef, quant: str, shards: list[str]) -> None:
    split = _SPLIT.search(shards[0])
    if split is None:
        if len(shards) > 1:
            raise ModelNotFound(
                f"{ref.repo_id} has several {quant} files ({', '.join(shards)}); "
                "cannot tell which one to use",
                param="model",
            )
        return
    expected = int(split.group(2))
    if len(shards) != expected:
        raise ModelNotFound(
            f"{ref.repo_id}: {quant} is split in {expected} files but {len(shards)} are listed",
            param="model",
        )


def is_safe_repo_path(filename: str) -> bool:
    """A file name from a repo listing that stays inside the repo's folder."""
    parts = filename.split("/")
    return bool(filename) and not filename.startswith("/") and ".." not in parts and "" not in parts
