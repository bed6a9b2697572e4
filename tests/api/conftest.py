"""Three distinct tiny models, so tests can tell which one answered."""

from pathlib import Path

import pytest

from tiny_model import write_tiny_model


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("serve-models")
    return [write_tiny_model(folder / f"tiny-{seed}.gguf", seed=seed) for seed in (1, 2, 3)]
