"""Pulls from the Hugging Face Hub into its own cache layout, verified by sha256.

``huggingface_hub`` lists the repo (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``
and ``HF_HOME`` as it reads them) and builds URLs; ``download.py`` fetches and verifies
each file. A repo with GGUF files gives the quant asked for (Ollama's default else),
registered under ``hf.co/USER/REPO:QUANT``; a repo without GGUF files but with
``config.json`` and safetensors gives its config, tokenizer and safetensors files
(``hf_files.py``), which need no registering: the resolver finds them in the Hugging
Face cache, as vLLM and transformers do. Files land where huggingface_hub puts them
(``models--USER--REPO/blobs``, ``snapshots/COMMIT/...``), so other tools share them.
"""

from __future__ import annotations

import logging
import re

import httpx
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from llmport.errors import ModelNotFound, PullFailed
from llmport.store import hf_files
from llmport.store.download import (
    SHA1,
    SHA256,
    Progress,
    ProgressCallback,
    RemoteFile,
    check_disk,
    fetch_blob,
    link_snapshot,
    repo_dir,
)
from llmport.store.gguf_info import GGUFInfo, read_gguf_info
from llmport.store.hf_ref import HfRef, choose_files, gguf_files, is_safe_repo_path, parse_hf_ref
from llmport.store.registry import ModelFile, ModelRecord, Registry

__all__ = ["Progress", "ProgressCallback", "metadata_of", "pull"]

logger = logging.getLogger(__name__)


def pull(
    text: str,
    registry: Registry,
    report: ProgressCallback | None = None,
    prefer_safetensors: bool = False,
) -> ModelRecord:
    """Fetch ``hf.co/USER/REPO[:QUANT]`` (the files it needs); register a GGUF pull. A repo
    with both formats gives GGUF files, or with ``prefer_safetensors`` its safetensors."""
    say = report or (lambda _: None)
    ref = parse_hf_ref(text)
    say(Progress("pulling manifest"))
    commit, listing = _listing(ref)
    names = list(listing)
    wants_safetensors = prefer_safetensors or not gguf_files(names)
    if ref.quant is None and wants_safetensors and hf_files.is_safetensors_repo(names):
        return _pull_safetensors(ref, commit, listing, say)
    quant, chosen = choose_files(ref, names)
    if ref.quant is None:
        logger.info("%s: no quant named; using %s", ref.repo_id, quant)
        say(Progress(f"no quant named: using {quant} ({chosen[0]})"))
    files = [listing[name] for name in chosen]
    folder = repo_dir(ref.repo_id)
    check_disk(folder, files)
    for remote in files:
        fetch_blob(ref.repo_id, commit, remote, folder, say)
    paths = link_snapshot(folder, commit, files)
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


def _pull_safetensors(
    ref: HfRef, commit: str, listing: dict[str, RemoteFile], say: ProgressCallback
) -> ModelRecord:
    """Config, tokenizer and safetensors files into the cache (the index first: it names
    the shards); the snapshot appears once all are verified."""
    names = list(listing)
    folder = repo_dir(ref.repo_id)
    side = [listing[name] for name in hf_files.side_files(names)]
    check_disk(folder, side)
    blobs = {r.filename: fetch_blob(ref.repo_id, commit, r, folder, say) for r in side}
    indexes = [blob for name, blob in blobs.items() if name.endswith(hf_files.INDEX_SUFFIX)]
    weights = [listing[name] for name in hf_files.weight_files(names, indexes)]
    check_disk(folder, weights)
    for remote in weights:
        fetch_blob(ref.repo_id, commit, remote, folder, say)
    say(Progress("verifying sha256 digest"))
    paths = link_snapshot(folder, commit, [*side, *weights])
    say(Progress("success"))
    return ModelRecord(
        name=f"hf.co/{ref.repo_id}",
        source=f"hf.co/{ref.repo_id}@{commit}",
        files=[ModelFile(str(path), remote.digest or "", remote.size)
               for path, remote in zip(paths, [*side, *weights], strict=True)],
        metadata={"format": "safetensors"},
    )  # fmt: skip


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
        s.rfilename: RemoteFile(
            s.rfilename,
            _checked(SHA256, s.lfs.sha256 if s.lfs else None),
            s.size or 0,
            None if s.lfs else _checked(SHA1, s.blob_id),
        )
        for s in info.siblings or []
        if is_safe_repo_path(s.rfilename)
    }
    if not SHA1.match(str(info.sha)):
        raise PullFailed(f"the Hub answered an odd commit id {info.sha!r} for {ref.repo_id}")
    return str(info.sha), files


def _checked(pattern: re.Pattern[str], value: str | None) -> str | None:
    """A digest names a file in the cache: only hex digits may (nothing like ``../``)."""
    if value is not None and not pattern.match(value):
        raise PullFailed(f"the Hub answered an odd digest {value!r}; refusing to use it")
    return value


def _cached_listing(ref: HfRef) -> tuple[str, dict[str, RemoteFile]]:
    folder = repo_dir(ref.repo_id)
    refs_main = folder / "refs" / "main"
    if not refs_main.is_file():
        raise ModelNotFound(
            f"{ref.repo_id} is not in the local cache and the Hub is offline", param="model"
        )
    commit = refs_main.read_text().strip()
    if not SHA1.match(commit):
        raise ModelNotFound(f"{ref.repo_id}: the cache's refs/main is not a commit id")
    snapshot = folder / "snapshots" / commit
    files = {}
    for path in snapshot.rglob("*"):
        blob = path.resolve()
        if path.is_file() and blob.is_relative_to(folder.resolve() / "blobs"):
            name = path.relative_to(snapshot).as_posix()
            sha256 = blob.name if SHA256.match(blob.name) else None
            blob_id = blob.name if SHA1.match(blob.name) else None
            files[name] = RemoteFile(name, sha256, blob.stat().st_size, blob_id)
    return commit, files
