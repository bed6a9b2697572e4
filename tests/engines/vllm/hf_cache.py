"""Lay a model folder out in the Hugging Face cache, as a download would."""

from __future__ import annotations

import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def put_in_hf_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """``cache/models--org--name/snapshots/REV/`` with ``folder``'s files; refs/main -> REV."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot
