"""``--models-dir`` serves a folder by name; paths from clients only where allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from server_helpers import running_server


@pytest.fixture
def models_dir(tmp_path: Path, tiny_model_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(tiny_model_path, folder / "a.gguf")
    (folder / "sub" / "b.gguf").symlink_to(tiny_model_path)  # Links are served too.
    (folder / "notes.txt").write_text("not a model")
    shutil.copy(tiny_model_path, tmp_path / "outside.gguf")
    return folder


def test_a_models_folder_is_served_by_relative_names_and_paths_are_refused(
    tmp_path: Path, models_dir: Path, tiny_model_path: Path
) -> None:
    args = ("--models-dir", str(models_dir), "--no-allow-model-paths")
    with running_server(tmp_path, *args) as server:
        listed = [m["id"] for m in httpx.get(f"{server.base_url}/v1/models").json()["data"]]
        assert {"a", "sub/b"} <= set(listed)
        tags = [m["name"] for m in httpx.get(f"{server.base_url}/api/tags").json()["models"]]
        assert {"a", "sub/b"} <= set(tags)
        for name in ("a", "sub/b"):
            body = {"model": name, "prompt": "hi", "max_tokens": 2}
            answer = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            generated = httpx.post(
                f"{server.base_url}/api/generate",
                timeout=60,
                json={
                    "model": name,
                    "prompt": "hi",
                    "stream": False,
                    "options": {"num_predict": 2},
                },
            )
            assert generated.status_code == 200, generated.text
        outside = [str(tiny_model_path), "../outside", "sub/../../outside", "notes", "/a"]
        for name in outside:
            body = {"model": name, "prompt": "hi", "max_tokens": 2}
            refused = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60)
            assert refused.status_code == 404, (name, refused.text)
            assert refused.json()["error"]["code"] == "model_not_found"
            shown = httpx.post(f"{server.base_url}/api/show", json={"model": name})
            assert shown.status_code == 404, (name, shown.text)


def test_a_server_reachable_by_others_refuses_paths_unless_allowed(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    body = {"model": str(tiny_model_path), "prompt": "hi", "max_tokens": 2}
    with running_server(tmp_path, "--host", "0.0.0.0") as server:
        refused = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60)
        assert refused.status_code == 404 and "by path" in refused.json()["error"]["message"]
    with running_server(tmp_path, "--host", "0.0.0.0", "--allow-model-paths") as server:
        allowed = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=60)
        assert allowed.status_code == 200, allowed.text
