"""The fake Hub is faithful enough that the real huggingface_hub client downloads from it.

Pinned behaviours of huggingface_hub 2.4.0 that llmport's downloader has to live with are
asserted here too, so that an upgrade that changes them fails loudly.
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import HfApi, close_session, file_download, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from fake_hub import FakeHub

REPO = "tester/tiny-GGUF"
GGUF = bytes(range(256)) * 16  # 4 KiB, LFS
README = b"# tiny\n"  # plain git file


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        hub.add_file(REPO, "model.gguf", GGUF)
        hub.add_file(REPO, "docs/README.md", README, lfs=False)
        hub.patch_client(monkeypatch, tmp_path / "hf")
        yield hub
        close_session()  # drop pooled keep-alive connections to this server before it stops


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip (and record) the 1 s pause http_get takes before resuming a cut download."""
    slept: list[float] = []
    monkeypatch.setattr(file_download, "time", SimpleNamespace(sleep=slept.append))
    return slept


def gets(hub: FakeHub, filename: str) -> list[str | None]:
    """The Range header of each GET of a file, in order."""
    path = f"/{REPO}/resolve/main/{filename}"
    return [rng for method, p, rng in hub.requests if method == "GET" and p == path]


def test_the_env_var_alone_is_read_at_import_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert not hf_hub_url(REPO, "model.gguf").startswith(hub.url)  # still the import-time one
        hub.patch_client(monkeypatch, Path("/nonexistent"))
        assert hf_hub_url(REPO, "model.gguf").startswith(hub.url)


def test_download_gives_the_registered_bytes_once(hub: FakeHub, tmp_path: Path) -> None:
    path = Path(hf_hub_download(REPO, "model.gguf"))
    assert path.read_bytes() == GGUF
    assert path.is_relative_to(tmp_path / "hf" / "hub")
    assert path.parent.name == hub.commit_sha(REPO)
    assert path.resolve().name == hashlib.sha256(GGUF).hexdigest()  # blob named by the ETag
    assert Path(hf_hub_download(REPO, "model.gguf")) == path  # cached: a HEAD, no GET
    assert [m for m, p, _ in hub.requests if p.endswith("model.gguf")] == ["HEAD", "GET", "HEAD"]


def test_explicit_endpoint_and_cache_dir_need_no_patching(tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_file(REPO, "docs/README.md", README, lfs=False)
        try:
            path = hf_hub_download(
                REPO, "docs/README.md", endpoint=hub.url, cache_dir=tmp_path, token=False
            )
            assert Path(path).read_bytes() == README
        finally:
            close_session()


def test_revision_may_be_the_commit_sha(hub: FakeHub) -> None:
    sha = hub.commit_sha(REPO)
    assert Path(hf_hub_download(REPO, "docs/README.md", revision=sha)).read_bytes() == README
    assert HfApi().model_info(REPO, revision=sha).sha == sha


def test_model_info_lists_siblings_with_lfs_metadata(hub: FakeHub) -> None:
    info = HfApi().model_info(REPO, files_metadata=True)
    assert info.sha == hub.commit_sha(REPO)
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert siblings.keys() == {"model.gguf", "docs/README.md"}
    gguf, readme = siblings["model.gguf"], siblings["docs/README.md"]
    assert gguf.size == len(GGUF)
    assert gguf.lfs is not None
    assert gguf.lfs.sha256 == hashlib.sha256(GGUF).hexdigest()
    assert gguf.lfs.size == len(GGUF)
    assert readme.lfs is None
    assert readme.size == len(README)
    assert readme.blob_id == hashlib.sha1(b"blob %d\0" % len(README) + README).hexdigest()
    assert all(s.size is None for s in HfApi().model_info(REPO).siblings or [])


def test_tree_listings(hub: FakeHub) -> None:
    api = HfApi()
    assert sorted(api.list_repo_files(REPO)) == ["docs/README.md", "model.gguf"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO)}
    assert top == {"docs": "RepoFolder", "model.gguf": "RepoFile"}
    [info] = api.get_paths_info(REPO, ["model.gguf", "missing.bin"])
    assert isinstance(info, huggingface_hub.hf_api.RepoFile)
    assert info.lfs is not None
    assert info.lfs.sha256 == hashlib.sha256(GGUF).hexdigest()
    assert api.file_exists(REPO, "model.gguf")
    assert not api.file_exists(REPO, "missing.bin")
    assert not api.repo_exists("nobody/nothing")


def test_unknown_repo_raises_repository_not_found(hub: FakeHub) -> None:
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "model.gguf")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("nobody/nothing")


def test_unknown_file_or_revision_raises(hub: FakeHub) -> None:
    with pytest.raises(RemoteEntryNotFoundError) as caught:
        hf_hub_download(REPO, "missing.bin")
    assert isinstance(caught.value, EntryNotFoundError)  # the base class, local or remote
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "model.gguf", revision="v9")


def test_cut_download_resumes_with_a_range_request(
    hub: FakeHub, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2.4.0: a body shorter than its Content-Length (httpx RemoteProtocolError) makes http_get
    # sleep 1 s and GET again, up to 5 times in a row without progress, inside the same
    # hf_hub_download call. It resumes from what it has written, a whole number of
    # DOWNLOAD_CHUNK_SIZE (10 MiB) chunks: bytes of an incomplete chunk are lost. Shrink it
    # so a 4 KiB file shows the Range request.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 512)
    hub.drop_after(REPO, "model.gguf", 1000, times=2)
    assert Path(hf_hub_download(REPO, "model.gguf")).read_bytes() == GGUF
    assert gets(hub, "model.gguf") == [None, "bytes=512-", "bytes=1024-"]
    assert sleeps == [1, 1]


def test_cut_inside_the_first_chunk_restarts_without_range(
    hub: FakeHub, sleeps: list[float]
) -> None:
    hub.drop_after(REPO, "model.gguf", 1000)
    assert Path(hf_hub_download(REPO, "model.gguf")).read_bytes() == GGUF
    assert gets(hub, "model.gguf") == [None, None]


def test_reset_connection_raises_and_the_next_call_starts_over(
    hub: FakeHub, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2.4.0: a TCP reset is httpx ReadError, which http_get does not retry: it escapes
    # hf_hub_download as is (not an HfHubHTTPError), and the partial file is deleted.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 512)
    hub.drop_after(REPO, "model.gguf", 1000, reset=True)
    with pytest.raises(httpx2.ReadError):
        hf_hub_download(REPO, "model.gguf")
    assert Path(hf_hub_download(REPO, "model.gguf")).read_bytes() == GGUF
    assert gets(hub, "model.gguf") == [None, None]
    assert sleeps == []


def test_corrupt_bytes_are_not_detected_by_the_client(hub: FakeHub) -> None:
    # 2.4.0 checks only the size of a plain HTTP download, never its sha256.
    hub.corrupt(REPO, "model.gguf")
    path = Path(hf_hub_download(REPO, "model.gguf"))
    data = path.read_bytes()
    assert len(data) == len(GGUF)
    assert data != GGUF
    assert path.resolve().name == hashlib.sha256(GGUF).hexdigest()  # named for the good bytes


@pytest.mark.parametrize(
    ("header", "status", "content_range", "body"),
    [
        ("bytes=10-19", 206, "bytes 10-19/4096", GGUF[10:20]),
        ("bytes=4000-", 206, "bytes 4000-4095/4096", GGUF[4000:]),
        ("bytes=-6", 206, "bytes 4090-4095/4096", GGUF[-6:]),
        ("bytes=4096-", 416, "bytes */4096", b""),
    ],
    ids=["span", "open", "suffix", "past-end"],
)
def test_range_requests(
    hub: FakeHub, header: str, status: int, content_range: str, body: bytes
) -> None:
    conn = http.client.HTTPConnection(hub.url.removeprefix("http://"), timeout=5)
    try:
        conn.request("GET", f"/{REPO}/resolve/main/model.gguf", headers={"Range": header})
        response = conn.getresponse()
        assert (response.status, response.getheader("Content-Range")) == (status, content_range)
        assert response.read() == body
    finally:
        conn.close()
