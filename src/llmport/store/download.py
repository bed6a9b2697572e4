"""One file of a Hub repo into the Hugging Face cache's ``blobs/``, verified, resumable.

``huggingface_hub``'s own client stores bytes that do not match the LFS sha256 without a
word, so the download is ours: it hashes while it writes, resumes a cut connection with a
Range request (re-hashing the partial file once), and moves a blob into place only when
size and digest match: the LFS sha256, or for a plain git file (``config.json``, the
tokenizer's files) its git blob sha1, which is also the name huggingface_hub gives such
a blob. A lock file per blob makes two pulls of one file, in one process or several,
download it once. The snapshot's links are made by ``link_snapshot`` only once every
blob of a pull is in place, so an interrupted pull leaves no half model behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from llmport.errors import ChecksumMismatch, InsufficientStorage, PullFailed

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
DISK_MARGIN_BYTES = 64 << 20
_CHUNK_BYTES = 1 << 20
_REPORT_SECONDS = 0.1
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class Progress:
    """Ollama's pull statuses: ``pulling <digest>`` carries total and completed bytes."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A repo file as the Hub lists it: LFS files have a sha256, git files a blob sha1."""

    filename: str
    sha256: str | None
    size: int
    blob_id: str | None = None

    @property
    def blob_name(self) -> str:
        """Its name under ``blobs/``, as huggingface_hub names it (the file's ETag)."""
        return self.sha256 or self.blob_id or self.filename.replace("/", "--")

    @property
    def digest(self) -> str | None:
        """What the bytes must hash to (sha256, or git's sha1 of ``blob SIZE\\0`` + bytes)."""
        return self.sha256 or self.blob_id

    def hasher(self) -> hashlib._Hash:
        if self.sha256 is not None or self.blob_id is None:
            return hashlib.sha256()
        hasher = hashlib.sha1()
        hasher.update(b"blob %d\0" % self.size)
        return hasher


def repo_dir(repo_id: str) -> Path:
    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def check_disk(folder: Path, files: list[RemoteFile]) -> None:
    """Refuse before downloading what the cache's disk cannot hold."""
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    needed = 0
    for remote in files:
        blob = blobs / remote.blob_name
        if not blob.exists():
            partial = _partial(blob)
            needed += remote.size - (partial.stat().st_size if partial.exists() else 0)
    free = shutil.disk_usage(blobs).free
    if needed + DISK_MARGIN_BYTES > free:
        raise InsufficientStorage(
            f"the download needs {needed / 2**30:.2f} GiB but {blobs} has "
            f"{free / 2**30:.2f} GiB free"
        )


def fetch_blob(
    repo_id: str, commit: str, remote: RemoteFile, folder: Path, say: ProgressCallback
) -> Path:
    """The blob of ``remote`` under ``folder/blobs``, downloaded and verified if needed."""
    blob = folder / "blobs" / remote.blob_name
    with _locked(blob):
        if not blob.exists():
            if constants.HF_HUB_OFFLINE:
                raise PullFailed(f"{remote.filename} is not cached and the Hub is offline")
            url = hf_hub_url(repo_id, remote.filename, revision=commit,
                             endpoint=constants.ENDPOINT)  # fmt: skip
            _download(url, blob, remote, say)
    return blob


def link_snapshot(folder: Path, commit: str, files: list[RemoteFile]) -> list[Path]:
    """``snapshots/COMMIT/<file>`` links to the (fetched) blobs, then ``refs/main``: the
    snapshot appears whole, after its last blob."""
    links = []
    for remote in files:
        link = folder / "snapshots" / commit / remote.filename
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):  # Another pull of it linked it first.
                link.symlink_to(os.path.relpath(folder / "blobs" / remote.blob_name, link.parent))
        links.append(link)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return links


@contextmanager
def _locked(blob: Path) -> Iterator[None]:
    with (blob.parent / f"{blob.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _partial(blob: Path) -> Path:
    return blob.parent / f"{blob.name}.incomplete"


def _download(url: str, blob: Path, remote: RemoteFile, say: ProgressCallback) -> None:
    partial = _partial(blob)
    hasher, done = _resume_state(partial, remote)
    digest = f"sha256:{remote.sha256}" if remote.sha256 else remote.filename
    label = f"pulling {remote.sha256[:12] if remote.sha256 else remote.filename}"
    say(Progress(label, digest, remote.size, done))
    failures = 0
    while done < remote.size:
        before = done
        try:
            done = _transfer(url, partial, hasher, done, remote, (label, digest), say)
            error: Exception = PullFailed(f"the server sent {done} of {remote.size} bytes")
        except httpx.TransportError as cut:
            done, error = partial.stat().st_size if partial.exists() else 0, cut
        if done >= remote.size:
            break
        failures = 0 if done > before else failures + 1
        if failures >= MAX_ATTEMPTS:
            raise PullFailed(
                f"download of {remote.filename} failed {failures} times in a row, last: "
                f"{error}; run the pull again to resume"
            ) from error
        logger.warning("%s: connection lost at %d bytes (%s); resuming", remote.filename,
                       done, error)  # fmt: skip
        time.sleep(0.1 * (failures + 1))
    if done != remote.size or (remote.digest and hasher.hexdigest() != remote.digest):
        partial.unlink(missing_ok=True)
        kind = "sha256" if remote.sha256 or not remote.blob_id else "git blob sha1"
        raise ChecksumMismatch(
            f"{remote.filename}: downloaded bytes do not match the Hub's {kind} "
            f"{remote.digest} (got {hasher.hexdigest()}, {done} bytes); deleted, nothing "
            "registered"
        )
    if not remote.size:
        partial.touch()  # An empty file: no GET wrote it.
    os.replace(partial, blob)


def _resume_state(partial: Path, remote: RemoteFile) -> tuple[hashlib._Hash, int]:
    """A hasher fed with what an earlier, interrupted pull left (read once)."""
    hasher = remote.hasher()
    done = 0
    if partial.exists():
        with partial.open("rb") as file:
            while chunk := file.read(_CHUNK_BYTES):
                hasher.update(chunk)
                done += len(chunk)
    return hasher, done


def _transfer(
    url: str,
    partial: Path,
    hasher: hashlib._Hash,
    done: int,
    remote: RemoteFile,
    names: tuple[str, str],
    say: ProgressCallback,
) -> int:
    """One GET from ``done`` on; returns the bytes now on disk (raises on a cut)."""
    label, digest = names
    headers = build_hf_headers()
    if done:
        headers["Range"] = f"bytes={done}-"
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
        if response.status_code == 200 and done:
            raise PullFailed(f"{url}: the server ignored the Range request; cannot resume")
        if response.status_code not in (200, 206):
            raise PullFailed(f"{url}: HTTP {response.status_code}")
        last_report = 0.0
        with partial.open("ab") as file:
            # As the network delivers: a cut loses nothing already received.
            for chunk in response.iter_bytes():
                file.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last_report >= _REPORT_SECONDS or done == remote.size:
                    say(Progress(label, digest, remote.size, done))
                    last_report = now
    return done
