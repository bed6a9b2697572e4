"""A local fake of the Hugging Face Hub's HTTP API, for download tests without internet.

Serves the routes that the real `huggingface_hub` client (checked against 2.4.0) uses to
download model files, on 127.0.0.1 in a background thread:

- ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: ETag (sha256 for LFS files, git
  blob sha1 otherwise, quoted), X-Linked-Etag/X-Linked-Size for LFS, X-Repo-Commit,
  Content-Length, Accept-Ranges; ``Range`` answers 206 with Content-Range (416 if unsatisfiable).
- ``GET /api/models/{repo_id}[/revision/{revision}]`` (``?blobs=True`` adds size, blobId, lfs;
  ``library_name`` is gguf or transformers, by the files).
- ``GET /api/models/{repo_id}/tree/{revision}[/{path}][?recursive=True]``.
- ``POST /api/models/{repo_id}/paths-info/{revision}`` (form field ``paths``, repeated).

Errors carry the X-Error-Code header the client maps to exceptions: unknown repo -> 401
``RepoNotFound`` (``RepositoryNotFoundError``), unknown revision -> 404 ``RevisionNotFound``,
unknown file -> 404 ``EntryNotFound`` (``RemoteEntryNotFoundError``). The 401 needs the header:
the client only maps a bare 401 to RepositoryNotFoundError for https:// URLs.

Pointing the client at it: ``huggingface_hub.constants`` reads HF_ENDPOINT and HF_HOME once, at
import, so setting the env vars in a test after the import changes nothing (and
``importlib.reload(constants)`` outlives the test; the module-level ``huggingface_hub.model_info``
etc. stay bound to an ``HfApi()`` built at import anyway). What works: pass
``endpoint=hub.url`` (and ``cache_dir``) to ``hf_hub_download`` and ``HfApi``, or call
``hub.patch_client(monkeypatch, tmp_path)``, which patches the constants for the test (then
``hf_hub_download`` and ``HfApi()`` with no endpoint use the fake) and sets the env vars for
subprocesses, where HF_ENDPOINT works as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import pytest

_API = re.compile(r"^/api/models/([^/]+(?:/[^/]+)?)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: What the Hub's .gitattributes stores in LFS (the binaries a model repo holds).
_LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model", ".h5"})


@dataclass
class _File:
    """One file of a revision, with the ids the Hub derives from its bytes."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer stored in git instead of an LFS file's bytes."""
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def blob_id(self) -> str:
        """The git blob sha1 of what git stores (the pointer, for LFS files)."""
        stored = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


class FakeHub:
    """``with FakeHub() as hub:`` serves registered files at ``hub.url`` until the block ends."""

    def __init__(self) -> None:
        self._repos: dict[str, dict[str, dict[str, _File]]] = {}  # repo -> revision -> path -> file
        self._drops: dict[tuple[str, str], tuple[int, int, bool]] = {}  # num_bytes, times, reset
        self._corrupt: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, unquoted path, Range)
        self.url = ""

    def __enter__(self) -> FakeHub:
        """Bind a free port and serve; the socket exists only inside the `with` block."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = False  # server_close() joins them: no thread outlives a test
        # Poll every 10 ms rather than 0.5 s: shutdown() waits for the loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,))
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        with self._lock:  # wake handlers blocked on idle keep-alive connections
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()

    def patch_client(self, monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> None:
        """Point huggingface_hub (already imported or not) and subprocesses at this hub."""
        from huggingface_hub import constants

        for name, value in {"HF_ENDPOINT": self.url, "HF_HOME": str(hf_home)}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HF_TOKEN", raising=False)  # never send a developer's real token
        patched = {
            "ENDPOINT": self.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": self.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(hf_home / "hub"),
            "HF_TOKEN_PATH": str(hf_home / "token"),
            "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        }
        for name, value in patched.items():
            monkeypatch.setattr(constants, name, value)

    def add_file(
        self, repo_id: str, filename: str, data: bytes, *, lfs: bool = True, revision: str = "main"
    ) -> None:
        """Register a file in a model repo, creating the repo and revision on first use."""
        with self._lock:
            files = self._repos.setdefault(repo_id, {}).setdefault(revision, {})
            files[filename] = _File(data, lfs)

    def add_folder(self, repo_id: str, folder: Path, revision: str = "main") -> None:
        """Register every file under ``folder`` (a model saved by transformers, say); weights
        and other binaries are LFS files, as the Hub stores them, the rest plain git files."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            self.add_file(repo_id, name, path.read_bytes(), lfs=path.suffix in _LFS_SUFFIXES,
                          revision=revision)  # fmt: skip

    def commit_sha(self, repo_id: str, revision: str = "main") -> str:
        """The fake commit of a revision: a sha1 of its content, stable across runs."""
        files = self._repos[repo_id][revision]
        h = hashlib.sha1(f"{repo_id}@{revision}".encode())
        for path in sorted(files):
            h.update(f"\n{path} {files[path].blob_id}".encode())
        return h.hexdigest()

    def drop_after(
        self, repo_id: str, filename: str, num_bytes: int, times: int = 1, *, reset: bool = False
    ) -> None:
        """Make the next `times` GETs of a file stop after `num_bytes` of the body and hang up.

        The hang-up is a clean close (FIN), or with `reset` a TCP RST: the client sees a short
        body (httpx RemoteProtocolError) or a connection reset (httpx ReadError) respectively.
        """
        with self._lock:
            self._drops[(repo_id, filename)] = (num_bytes, times, reset)

    def corrupt(self, repo_id: str, filename: str) -> None:
        """Serve different bytes (same length) while headers and metadata describe the original."""
        with self._lock:
            self._corrupt.add((repo_id, filename))

    def _take_drop(self, repo_id: str, filename: str) -> tuple[int, bool] | None:
        with self._lock:
            num_bytes, times, reset = self._drops.get((repo_id, filename), (0, 0, False))
            if times <= 0:
                return None
            self._drops[(repo_id, filename)] = (num_bytes, times - 1, reset)
            return num_bytes, reset

    def _revision(self, repo_id: str, revision: str) -> tuple[str, dict[str, _File]] | None:
        """Resolve a branch name or a commit sha to (branch, files)."""
        revs = self._repos[repo_id]
        if revision in revs:
            return revision, revs[revision]
        for name, files in revs.items():
            if self.commit_sha(repo_id, name) == revision:
                return name, files
        return None


def _tree_entries(files: dict[str, _File], folder: str, recursive: bool) -> list[dict[str, object]]:
    """The /tree JSON of a folder ("" = root): files and folders, as the Hub lists them."""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict[str, object]] = {}
    for path, f in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            sub = prefix + "/".join(parts[:i])
            oid = hashlib.sha1(sub.encode()).hexdigest()
            entries.setdefault(sub, {"type": "directory", "oid": oid, "size": 0, "path": sub})
        if recursive or len(parts) == 1:
            entries[path] = _file_entry(path, f)
    return list(entries.values())


def _file_entry(path: str, f: _File) -> dict[str, object]:
    entry: dict[str, object] = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": path}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
    return entry


def _sibling(path: str, f: _File, blobs: bool) -> dict[str, object]:
    """A `siblings` item of /api/models: only the name unless ``?blobs=True``."""
    if not blobs:
        return {"rfilename": path}
    sib: dict[str, object] = {"rfilename": path, "size": len(f.data), "blobId": f.blob_id}
    if f.lfs:
        sib["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
    return sib


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``bytes=`` range, or None if unsatisfiable."""
    m = _RANGE.match(header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        return None
    if m.group(1):
        start, end = int(m.group(1)), min(int(m.group(2) or size - 1) + 1, size)
    else:  # suffix range: the last N bytes
        start, end = max(size - int(m.group(2)), 0), size
    return (start, end) if start < end else None


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Routes one connection's requests; HTTP/1.1 keep-alive like the real Hub."""

        protocol_version = "HTTP/1.1"
        timeout = 30

        def setup(self) -> None:
            super().setup()
            with hub._lock:
                hub._conns.add(self.connection)

        def finish(self) -> None:
            with hub._lock:
                hub._conns.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def _route(self) -> None:
            url = urlsplit(self.path)
            hub.requests.append((self.command, unquote(url.path), self.headers.get("Range")))
            query = parse_qs(url.query)
            if self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                query = parse_qs(self.rfile.read(length).decode())
            if m := _API.match(url.path):
                repo_id, kind, rev, rest = (unquote(g) if g else g for g in m.groups())
                self._api(repo_id, kind, rev or "main", (rest or "").strip("/"), query)
            elif "/resolve/" in url.path:
                repo_part, _, rest = url.path.partition("/resolve/")
                rev, _, filename = rest.partition("/")
                self._resolve(unquote(repo_part.strip("/")), unquote(rev), unquote(filename))
            else:
                self._error(404, None, "Not Found")

        do_HEAD = do_GET = do_POST = _route  # noqa: N815 (http.server's names)

        def _api(
            self, repo_id: str, kind: str | None, rev: str, path: str, query: dict[str, list[str]]
        ) -> None:
            if repo_id not in hub._repos:
                return self._error(401, "RepoNotFound", "Repository not found")
            found = hub._revision(repo_id, rev)
            if found is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            branch, files = found
            sha = hub.commit_sha(repo_id, branch)
            body: object
            if kind == "tree":
                if path and path not in files and not any(p.startswith(path + "/") for p in files):
                    return self._error(404, "EntryNotFound", f"{path} does not exist", sha)
                recursive = query.get("recursive", ["False"])[0].lower() == "true"
                body = _tree_entries(files, path, recursive)
            elif kind == "paths-info":
                wanted = set(query.get("paths", []))  # unknown paths are left out, not errors
                body = [e for e in _tree_entries(files, "", True) if e["path"] in wanted]
            else:
                blobs = query.get("blobs", ["False"])[0].lower() == "true"
                siblings = [_sibling(name, f, blobs) for name, f in sorted(files.items())]
                body = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False}
                library = "gguf" if any(n.endswith(".gguf") for n in files) else "transformers"
                body.update(siblings=siblings, tags=[library], library_name=library)
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _resolve(self, repo_id: str, rev: str, filename: str) -> None:
            if repo_id not in hub._repos:
                return self._error(401, "RepoNotFound", "Repository not found")
            found = hub._revision(repo_id, rev)
            if found is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            branch, files = found
            sha = hub.commit_sha(repo_id, branch)
            if filename not in files:
                return self._error(404, "EntryNotFound", "Entry not found", sha)
            f = files[filename]
            headers = {"X-Repo-Commit": sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes"}
            headers["Content-Type"] = "application/octet-stream"
            if f.lfs:  # the real Hub sends these on the redirect to the LFS/Xet storage
                headers["X-Linked-Etag"] = f'"{f.sha256}"'
                headers["X-Linked-Size"] = str(len(f.data))
            data = f.data
            if (repo_id, filename) in hub._corrupt:
                data = bytes(b ^ 0xFF for b in data)
            start, end, status = 0, len(data), 200
            if (rng := self.headers.get("Range")) is not None:
                if (span := _parse_range(rng, len(data))) is None:
                    headers["Content-Range"] = f"bytes */{len(data)}"
                    return self._send(416, b"", headers)
                start, end = span
                status, headers["Content-Range"] = 206, f"bytes {start}-{end - 1}/{len(data)}"
            body = data[start:end]
            cut = hub._take_drop(repo_id, filename) if self.command == "GET" else None
            self._send(status, body, headers, cut)

        def _error(self, status: int, code: str | None, msg: str, sha: str | None = None) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": msg}
            if code is not None:
                headers["X-Error-Code"] = code
            if sha is not None:
                headers["X-Repo-Commit"] = sha
            self._send(status, json.dumps({"error": msg}).encode(), headers)

        def _send(
            self,
            status: int,
            body: bytes,
            headers: dict[str, str],
            cut: tuple[int, bool] | None = None,
        ) -> None:
            """Send a response; with `cut`, declare the whole length, send less, hang up."""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            num_bytes, reset = cut if cut is not None else (len(body), False)
            self.wfile.write(body[:num_bytes])
            if num_bytes < len(body):
                self.close_connection = True  # the server closes the socket: FIN after the bytes
                if reset:  # close now with a zero linger: the kernel sends RST, not FIN
                    linger = struct.pack("ii", 1, 0)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.connection.close()

    return Handler
