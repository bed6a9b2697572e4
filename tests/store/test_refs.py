"""resolve_model: no name means the embedded model; a path must be an existing .gguf."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmport.errors import ModelNotFound
from llmport.store import refs
from llmport.store.refs import resolve_model


@pytest.fixture
def embedded_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand in for the 253 MB assembly: resolve_model only has to pick it."""
    path = tmp_path / "embedded.gguf"
    monkeypatch.setattr(refs, "embedded_model_path", lambda cache_dir: path)
    return path


@pytest.mark.parametrize(
    "ref", [None, "", "  ", "default", "gemma3:270m", "gemma3:270m-q4_k_m", "Gemma3:270M-Q4_K_M"]
)
def test_no_name_or_an_embedded_name_gives_the_embedded_model(
    ref: str | None, tmp_path: Path, embedded_path: Path
) -> None:
    assert resolve_model(ref, tmp_path) == embedded_path


def test_an_existing_gguf_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("m.gguf", tmp_path) == model
    assert resolve_model(str(model), tmp_path) == model


def test_a_path_under_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert resolve_model("~/m.gguf", tmp_path) == tmp_path / "m.gguf"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing.gguf", "does not exist"),
        ("some/dir/missing", "does not exist"),
        ("llama3:8b", "not found.*gemma3:270m"),
        ("hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M", "pull it first"),
        ("huggingface.co/org/repo", "pull it first"),
    ],
)
def test_unknown_refs_are_model_not_found(tmp_path: Path, ref: str, message: str) -> None:
    with pytest.raises(ModelNotFound, match=message) as caught:
        resolve_model(ref, tmp_path)
    assert (caught.value.status, caught.value.param) == (404, "model")


def test_a_folder_or_a_non_gguf_file_is_model_not_found(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFound, match="folder"):
        resolve_model(str(tmp_path), tmp_path)
    with pytest.raises(ModelNotFound, match=r"not a \.gguf file"):
        resolve_model(str(tmp_path / "weights.bin"), tmp_path)
