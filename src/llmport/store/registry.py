"""The registry: an embedded SQLite database of model names and what they stand for.

A name (``gemma3:270m``, ``hf.co/USER/REPO:Q8_0``, ``mybot``) maps to GGUF files
(with digests), the GGUF metadata read when it was registered, and Ollama-style
per-model settings (parameters, template, system prompt, messages). Files live
elsewhere (the Hugging Face cache, the embedded cache, a user's path); removing a
name never deletes a file that another name still uses.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmport.errors import InvalidParameter, ModelNotFound

_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*(?::[A-Za-z0-9._-]+)?$"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    modified REAL NOT NULL
)
"""
#: Stored Responses-API answers (``store: true``), so a conversation continues by id.
_RESPONSES_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass
class ModelFile:
    path: str
    sha256: str
    size: int


@dataclass
class ModelRecord:
    """Everything a name stands for. ``files[0]`` is what llama.cpp opens."""

    name: str
    source: str
    files: list[ModelFile]
    metadata: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    modified: float = 0.0

    @property
    def path(self) -> Path:
        return Path(self.files[0].path)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def digest(self) -> str:
        return self.files[0].sha256

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("modified")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, modified: float) -> ModelRecord:
        data = json.loads(text)
        data["files"] = [ModelFile(**f) for f in data["files"]]
        data["messages"] = [tuple(m) for m in data.get("messages", [])]
        return cls(**data, modified=modified)


def normalize_name(name: str) -> str:
    """``NAME`` or ``NAME:TAG`` (``:latest`` when no tag); InvalidParameter otherwise."""
    name = name.strip()
    if name.lower().startswith("https://"):
        name = name[len("https://") :]
    if not _NAME.match(name) or ".." in name:
        raise InvalidParameter(
            f"{name!r} is not a model name: use letters, digits, '.', '_', '-', '/' and "
            "one optional ':tag'",
            param="model",
        )
    return name if ":" in name else f"{name}:latest"


class Registry:
    """Names to records, in ``<home>/registry.sqlite``. Safe across processes (SQLite)."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / "registry.sqlite"
        with self._db() as db:
            db.execute(_SCHEMA)
            db.execute(_RESPONSES_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get(self, name: str) -> ModelRecord | None:
        key = normalize_name(name)
        with self._db() as db:
            row = db.execute(
                "SELECT record, modified FROM models WHERE name = ?", (key,)
            ).fetchone()
        return None if row is None else ModelRecord.from_json(row[0], row[1])

    def require(self, name: str) -> ModelRecord:
        record = self.get(name)
        if record is None:
            raise ModelNotFound(f"model {name!r} not found", param="model")
        return record

    def put(self, record: ModelRecord) -> ModelRecord:
        record.name = normalize_name(record.name)
        record.modified = time.time()
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO models (name, record, modified) VALUES (?, ?, ?)",
                (record.name, record.to_json(), record.modified),
            )
        return record

    def list(self) -> list[ModelRecord]:
        with self._db() as db:
            rows = db.execute("SELECT record, modified FROM models ORDER BY modified DESC")
            return [ModelRecord.from_json(text, modified) for text, modified in rows.fetchall()]

    def remove(self, name: str) -> ModelRecord:
        record = self.require(name)
        with self._db() as db:
            db.execute("DELETE FROM models WHERE name = ?", (record.name,))
        return record

    def copy(self, source: str, destination: str) -> ModelRecord:
        record = self.require(source)
        record.name = destination
        return self.put(record)

    def is_file_used(self, path: str) -> bool:
        return any(f.path == path for r in self.list() for f in r.files)

    # -- stored responses (the Responses API's store / previous_response_id) -----------

    def put_response(self, response_id: str, record: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses (id, record, created) VALUES (?, ?, ?)",
                (response_id, json.dumps(record), time.time()),
            )

    def get_response(self, response_id: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute("SELECT record FROM responses WHERE id = ?", (response_id,))
            found = row.fetchone()
        return None if found is None else dict(json.loads(found[0]))

    def delete_response(self, response_id: str) -> bool:
        """True when there was one to delete."""
        with self._db() as db:
            deleted = db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
            return deleted.rowcount > 0
