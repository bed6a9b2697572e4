"""Pulls from the Hugging Face Hub into its own cache layout, verified by sha256.

``huggingface_hub`` lists the repo (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``
and ``HF_HOME`` as it reads them) and builds URLs; the download is ours because its
client stores bytes that do not match the LFS sha256 without a word. Ours hashes while
it writes, resumes a cut connection with a Range request (re-hashing the partial file
once), and moves a blob into place only when size and sha256 match. Files land where
huggingface_hub puts them (``models--USER--REPO/blobs``, ``snapshots/COMMIT/...``),
so vLLM, transformers and other tools share them. A lock file per blob makes two pulls
of one file, in one process or several, download it once.
"""

from __future__ import annotations

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
from huggingface_hub import HfApi, constants, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from llmport.errors import ChecksumMismatch, InsufficientStorage, ModelNotFound, PullFailed
from llmport.store.gguf_info import GGUFInfo, read_gguf_info
from llmport.store.hf_ref import HfRef, choose_files, is_safe_repo_path, parse_hf_ref
from llmport.store.registry import ModelFile, ModelRecord, Registry

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
DISK_MARGIN_BYTES = 64 << 20
_CHUNK_BYTES = 1 << 20
_REPORT_SECONDS = 0.1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


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
    filename: str
    sha256: str | None
    size: int


def pull(text: str, registry: Registry, report: ProgressCallback | None = None) -> ModelRecord:
    """Fetch ``hf.co/USER/REPO[:QUANT]`` (the files it needs) and register it."""
    say = report or (lambda _: None)
    ref = parse_hf_ref(text)
    say(Progress("pulling manifest"))
    commit, listing = _listing(ref)
    quant, names = choose_files(ref, list(listing))
    if ref.quant is None:
        logger.info("%s: no quant named; using %s", ref.repo_id, quant)
        say(Progress(f"no quant named: using {quant} ({names[0]})"))
    files = [listing[name] for name in names]
    repo_dir = _repo_dir(ref.repo_id)
    _check_disk(repo_dir, files)
    paths = [_fetch(ref, commit, remote, repo_dir, say) for remote in files]
    say(Progress("verifying sha256 digest"))
    info = read_gguf_info(paths[0])
    record = ModelRecord(
        name=HfRef(ref.repo_id, ref.quant.upper() if ref.quant else None).name,
        source=f"hf.co/{ref.repo_id}@{commit}:{quant}",
        files=[
            ModelFile(str(path), remote.sha256 or "", remote.size)
            for path, remote in zip(paths, files, strict=True)
        ],
        metadata=metadata_of(info) | {"quant": quant},
        license=[info.license] if info.license else [],
    )
    say(Progress("writing manifest"))
    registry.put(record)
    say(Progress("success"))
    return record


def metadata_of(info: GGUFInfo) -> dict[str, object]:
    """What ``show`` and ``/api/show`` print, kept when a model is registered."""
    return {
        "architecture": info.architecture,
        "num_params": info.num_params,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "quantization": info.quantization,
        "chat_template": info.chat_template,
        "license": info.license,
    }


# -- listing ---------------------------------------------------------------------------


def _listing(ref: HfRef) -> tuple[str, dict[str, RemoteFile]]:
    """(commit, files by name): from the Hub, or from the cache when offline."""
    if constants.HF_HUB_OFFLINE:
        return _cached_listing(ref)
    api = HfApi(endpoint=constants.ENDPOINT)
    try:
        info = api.model_info(ref.repo_id, files_metadata=True)
    except GatedRepoError as error:
        raise ModelNotFound(
            f"{ref.repo_id} is gated: accept its terms on the Hub and set HF_TOKEN ({error})",
            param="model",
        ) from error
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ModelNotFound(
            f"repository {ref.repo_id} not found on {constants.ENDPOINT} (private repos "
            "need HF_TOKEN)",
            param="model",
        ) from error
    except (HfHubHTTPError, httpx.HTTPError, OSError) as error:
        try:
            return _cached_listing(ref)
        except ModelNotFound:
            raise PullFailed(f"cannot reach {constants.ENDPOINT}: {error}") from error
    files = {
        s.rfilename: RemoteFile(s.rfilename, _checked_sha256(s.lfs.sha256 if s.lfs else None),
                                s.size or 0)
        for s in info.siblings or []
        if is_safe_repo_path(s.rfilename)
    }  # fmt: skip
    if not _SHA.match(str(info.sha)):
        raise PullFailed(f"the Hub answered an odd commit id {info.sha!r} for {ref.repo_id}")
    return str(info.sha), files


def _checked_sha256(value: str | None) -> str | None:
    """A digest names a file in the cache: only 64 hex digits may (nothing like ``../``)."""
    if value is not None and not _SHA256.match(value):
        raise PullFailed(f"the Hub answered an odd sha256 {value!r}; refusing to use it")
    return value


def _cached_listing(ref: HfRef) -> tuple[str, dict[str, RemoteFile]]:
    repo_dir = _repo_dir(ref.repo_id)
    refs_main = repo_dir / "refs" / "main"
    if not refs_main.is_file():
        raise ModelNotFound(
            f"{ref.repo_id} is not in the local cache and the Hub is offline", param="model"
        )
    commit = refs_main.read_text().strip()
    if not _SHA.match(commit):
        raise ModelNotFound(f"{ref.repo_id}: the cache's refs/main is not a commit id")
    snapshot = repo_dir / "snapshots" / commit
    files = {}
    for path in snapshot.rglob("*"):
        blob = path.resolve()
        if path.is_file() and blob.is_relative_to(repo_dir.resolve() / "blobs"):
            name = path.relative_to(snapshot).as_posix()
            files[name] = RemoteFile(name, blob.name, blob.stat().st_size)
    return commit, files


def _repo_dir(repo_id: str) -> Path:
    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def _check_disk(repo_dir: Path, files: list[RemoteFile]) -> None:
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    needed = 0
    for remote in files:
        blob = blobs / (remote.sha256 or remote.filename.replace("/", "--"))
        if not blob.exists():
            partial = _partial(blob)
            needed += remote.size - (partial.stat().st_size if partial.exists() else 0)
    free = shutil.disk_usage(blobs).free
    if needed + DISK_MARGIN_BYTES > free:
        raise InsufficientStorage(
            f"the download needs {needed / 2**30:.2f} GiB but {blobs} has "
            f"{free / 2**30:.2f} GiB free"
        )


# -- downloading -----------------------------------------------------------------------


def _fetch(
    ref: HfRef, commit: str, remote: RemoteFile, repo_dir: Path, say: ProgressCallback
) -> Path:
    """The snapshot path of ``remote``, downloading and verifying its blob if needed."""
    blob = repo_dir / "blobs" / (remote.sha256 or remote.filename.replace("/", "--"))
    with _locked(blob):
        if not blob.exists():
            if constants.HF_HUB_OFFLINE:
                raise PullFailed(f"{remote.filename} is not cached and the Hub is offline")
            url = hf_hub_url(
                ref.repo_id, remote.filename, revision=commit, endpoint=constants.ENDPOINT
            )
            _download(url, blob, remote, say)
        link = repo_dir / "snapshots" / commit / remote.filename
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, link.parent))
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
    return link


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
    hasher, done = _resume_state(partial)
    digest = f"sha256:{remote.sha256}" if remote.sha256 else remote.filename
    say(Progress(f"pulling {digest[7:19] if remote.sha256 else remote.filename}", digest,
                 remote.size, done))  # fmt: skip
    failures = 0
    while done < remote.size:
        before = done
        try:
            done = _transfer(url, partial, hasher, done, remote, digest, say)
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
    if done != remote.size or (remote.sha256 and hasher.hexdigest() != remote.sha256):
        partial.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{remote.filename}: downloaded bytes do not match the Hub's sha256 "
            f"{remote.sha256} (got {hasher.hexdigest()}, {done} bytes); deleted, nothing "
            "registered"
        )
    os.replace(partial, blob)


def _resume_state(partial: Path) -> tuple[hashlib._Hash, int]:
    """A hasher fed with what an earlier, interrupted pull left (read once)."""
    hasher = hashlib.sha256()
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
    digest: str,
    say: ProgressCallback,
) -> int:
    """One GET from ``done`` on; returns the bytes now on disk (raises on a cut)."""
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
                    say(Progress(f"pulling {digest[7:19]}", digest, remote.size, done))
                    last_report = now
    return done
