"""Pulls of safetensors repos (no GGUF files): the files vLLM and transformers load, in the
Hugging Face cache layout, every byte verified; found offline by the resolver."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import close_session, constants, hf_hub_download

from fake_hub import FakeHub
from llmport.errors import ChecksumMismatch, InvalidParameter, ModelNotFound, PullFailed
from llmport.models.resolver import Resolver
from llmport.store import download as download_module
from llmport.store.library import Library
from llmport.store.pull import Progress, pull
from llmport.store.registry import Registry
from server_helpers import running_server
from tiny_model import write_tiny_model

REPO = "tester/tiny-st"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
CONFIG = {"model_type": "llama", "num_hidden_layers": 1, "num_attention_heads": 2,
          "hidden_size": 64, "max_position_embeddings": 512, "vocab_size": 32}  # fmt: skip
#: What a pull must fetch, and what it must leave on the Hub.
WANTED = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "chat_template.jinja", "model.safetensors.index.json", *SHARDS}  # fmt: skip
UNWANTED = {"pytorch_model.bin", "consolidated.safetensors", "original/params.json", "README.md"}


def safetensors(name: str, rows: int) -> bytes:
    """A one-tensor safetensors file (F32, ``rows`` x 4)."""
    data = bytes(range(rows * 16))
    header = json.dumps({name: {"dtype": "F32", "shape": [rows, 4],
                                "data_offsets": [0, len(data)]}}).encode()  # fmt: skip
    return struct.pack("<Q", len(header)) + header + data


def repo_files() -> dict[str, bytes]:
    index = {"metadata": {}, "weight_map": {"a": SHARDS[0], "b": SHARDS[1]}}
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "generation_config.json": b'{"eos_token_id": 2}',
        "tokenizer.json": b'{"model": {}}',
        "tokenizer_config.json": b'{"chat_template": "ignored: the jinja file wins"}',
        "chat_template.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        SHARDS[0]: safetensors("a", 2),
        SHARDS[1]: safetensors("b", 3),
        "consolidated.safetensors": safetensors("ab", 5),
        "pytorch_model.bin": b"pickle " * 100,
        "original/params.json": b"{}",
        "README.md": b"# tiny\n",
    }


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    folder = tmp_path / "repo"
    for name, data in repo_files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with FakeHub() as hub:
        hub.add_folder(REPO, folder)
        hub.patch_client(monkeypatch, tmp_path / "hf")
        monkeypatch.setattr(download_module.time, "sleep", lambda _: None)
        yield hub
        close_session()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "home")


def repo_cache() -> Path:
    return Path(constants.HF_HUB_CACHE) / "models--tester--tiny-st"


def fetched(hub: FakeHub) -> set[str]:
    prefix = f"/{REPO}/resolve/{hub.commit_sha(REPO)}/"
    return {p.removeprefix(prefix) for m, p, _ in hub.requests if m == "GET" and prefix in p}


def test_a_safetensors_repo_lands_in_the_hf_cache_without_duplicates(
    hub: FakeHub, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Progress] = []
    record = pull(f"hf.co/{REPO}", registry, seen.append)
    assert fetched(hub) == WANTED and seen[-1].status == "success"
    assert record.name == f"hf.co/{REPO}" and record.metadata["format"] == "safetensors"
    assert registry.get(f"hf.co/{REPO}:latest") is None  # The HF cache is its store.
    snapshot = repo_cache() / "snapshots" / hub.commit_sha(REPO)
    assert (repo_cache() / "refs" / "main").read_text() == hub.commit_sha(REPO)
    assert {p.name for p in snapshot.iterdir()} == WANTED
    files = repo_files()
    for name in WANTED:  # Blobs named as huggingface_hub names them: sha256 or git sha1.
        blob = (snapshot / name).resolve()
        data = files[name]
        lfs = name.endswith(".safetensors")
        git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        expected = hashlib.sha256(data).hexdigest() if lfs else git_sha1
        assert blob.read_bytes() == data and blob.name == expected, name
    # transformers' and vLLM's loader find the files offline, through huggingface_hub.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    found = hf_hub_download(REPO, "config.json", local_files_only=True)
    assert Path(found) == snapshot / "config.json"
    resolver = Resolver(tmp_path / "home")
    for name in (f"hf.co/{REPO}", REPO):
        spec = resolver.resolve_now(name)
        assert spec.format == "hf" and spec.weight_files == (snapshot,), name
        # Two shards' tensors, not the consolidated copy's.
        assert spec.hf is not None and spec.hf.num_params == 2 * 4 + 3 * 4
        assert spec.chat_template == files["chat_template.jinja"].decode()


def test_pulling_again_fetches_nothing_and_works_offline(hub: FakeHub, registry: Registry) -> None:
    pull(f"hf.co/{REPO}", registry)
    before = len(hub.requests)
    pull(f"hf.co/{REPO}", registry)
    assert [m for m, *_ in hub.requests[before:]] == ["GET"]  # The listing alone.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        before = len(hub.requests)
        assert pull(f"hf.co/{REPO}", registry).name == f"hf.co/{REPO}"
        assert len(hub.requests) == before


@pytest.mark.parametrize("name", ["config.json", SHARDS[1]])
def test_bad_bytes_of_any_file_leave_no_snapshot(
    hub: FakeHub, registry: Registry, name: str
) -> None:
    hub.corrupt(REPO, name)
    kind = "sha256" if name.endswith(".safetensors") else "git blob sha1"
    with pytest.raises(ChecksumMismatch, match=kind):
        pull(f"hf.co/{REPO}", registry)
    assert not (repo_cache() / "snapshots").exists()
    assert not (repo_cache() / "refs").exists()
    blobs = {p.name for p in (repo_cache() / "blobs").iterdir()}
    assert not [b for b in blobs if b.endswith(".incomplete")]


def test_an_interrupted_pull_leaves_no_half_model_and_resumes(
    hub: FakeHub, registry: Registry
) -> None:
    size = len(repo_files()[SHARDS[1]])
    hub.drop_after(REPO, SHARDS[1], size // 2)

    def interrupt(progress: Progress) -> None:  # Ctrl-C, half-way through the last shard.
        if progress.total == size and progress.completed == size // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(f"hf.co/{REPO}", registry, interrupt)
    assert not (repo_cache() / "snapshots").exists()  # Nothing a loader could half-read.
    assert [p.name for p in (repo_cache() / "blobs").glob("*.incomplete")]
    pull(f"hf.co/{REPO}", registry)
    path = f"/{REPO}/resolve/{hub.commit_sha(REPO)}/{SHARDS[1]}"
    last = [rng for m, p, rng in hub.requests if m == "GET" and p == path][-1]
    assert last == f"bytes={size // 2}-"
    assert (repo_cache() / "snapshots" / hub.commit_sha(REPO) / SHARDS[1]).is_file()


def test_a_repo_of_bin_checkpoints_only_is_refused(
    hub: FakeHub, registry: Registry, tmp_path: Path
) -> None:
    hub.add_file("tester/old", "config.json", b"{}", lfs=False)
    hub.add_file("tester/old", "pytorch_model.bin", b"pickle")
    with pytest.raises(ModelNotFound, match=r"no GGUF files \(nor safetensors"):
        pull("hf.co/tester/old", registry)


def test_an_index_naming_a_missing_shard_is_refused(hub: FakeHub, registry: Registry) -> None:
    index = {"weight_map": {"a": SHARDS[0], "b": "../escape.safetensors"}}
    hub.add_file(REPO, "model.safetensors.index.json", json.dumps(index).encode(), lfs=False)
    with pytest.raises(PullFailed, match="does not have"):
        pull(f"hf.co/{REPO}", registry)


def test_a_repo_with_both_formats_gives_gguf_unless_safetensors_are_preferred(
    hub: FakeHub, registry: Registry, tmp_path: Path
) -> None:
    hub.add_file(REPO, "tiny-Q8_0.gguf", write_tiny_model(tmp_path / "t.gguf").read_bytes())
    assert pull(f"hf.co/{REPO}", registry).metadata["quant"] == "Q8_0"
    assert not (repo_cache() / "snapshots" / hub.commit_sha(REPO) / "config.json").exists()
    record = pull(f"hf.co/{REPO}", registry, prefer_safetensors=True)  # --engine vllm
    assert record.metadata["format"] == "safetensors"
    assert (repo_cache() / "snapshots" / hub.commit_sha(REPO) / "config.json").exists()


# -- rm: a pulled safetensors model's folder leaves the Hugging Face cache ---------------


def other_repo(hub: FakeHub, tmp_path: Path) -> str:
    """A second safetensors repo, pulled into the same cache."""
    repo = "tester/other-st"
    hub.add_folder(repo, tmp_path / "repo")
    return repo


@pytest.mark.parametrize("name", [f"hf.co/{REPO}", REPO])
def test_rm_by_either_name_removes_the_repo_folder_and_only_it(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    other = other_repo(hub, tmp_path)
    resolver = Resolver(tmp_path / "home")
    library = resolver.library
    library.pull(f"hf.co/{REPO}")
    library.pull(f"hf.co/{other}")
    listed = {r.name for r in resolver.hf_cache_records()}
    assert listed == {f"hf.co/{REPO}", f"hf.co/{other}"}

    removed = library.delete(name)
    assert removed.name == f"hf.co/{REPO}" and removed.metadata["format"] == "safetensors"
    assert not repo_cache().exists()
    assert [r.name for r in resolver.hf_cache_records()] == [f"hf.co/{other}"]
    assert f"hf.co/{REPO}" not in resolver.names()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for gone in (f"hf.co/{REPO}", REPO):
        with pytest.raises(ModelNotFound):
            resolver.resolve_now(gone)
    kept = resolver.resolve_now(other)  # The other repo's files are all still there.
    assert kept.hf is not None and kept.hf.num_params == 2 * 4 + 3 * 4
    with pytest.raises(ModelNotFound, match=REPO):
        library.delete(name)


@pytest.mark.parametrize("name", ["tester/never-pulled", "hf.co/tester/never-pulled",
                                  f"hf.co/{REPO}:Q8_0", "never-pulled"])  # fmt: skip
def test_rm_of_an_unknown_name_is_model_not_found(hub: FakeHub, tmp_path: Path, name: str) -> None:
    library = Library(tmp_path / "home")
    library.pull(f"hf.co/{REPO}")
    with pytest.raises(ModelNotFound, match=name):
        library.delete(name)
    assert repo_cache().is_dir()


def test_rm_never_follows_a_link_out_of_the_cache(hub: FakeHub, tmp_path: Path) -> None:
    library = Library(tmp_path / "home")
    library.pull(f"hf.co/{REPO}")
    outside = tmp_path / "outside"
    repo_cache().rename(outside)  # A model-shaped folder outside the cache, linked in.
    repo_cache().symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelNotFound, match=REPO):
        library.delete(REPO)
    assert repo_cache().is_symlink() and (outside / "refs" / "main").is_file()


def test_rm_refuses_while_a_gguf_pull_of_the_repo_uses_its_folder(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.add_file(REPO, "tiny-Q8_0.gguf", write_tiny_model(tmp_path / "t.gguf").read_bytes())
    library = Library(tmp_path / "home", prefer_safetensors=True)
    library.pull(f"hf.co/{REPO}")
    Library(tmp_path / "home").pull(f"hf.co/{REPO}:Q8_0")
    with pytest.raises(InvalidParameter, match=f"hf.co/{REPO}:Q8_0"):
        library.delete(REPO)
    assert repo_cache().is_dir()
    library.delete(f"hf.co/{REPO}:Q8_0")  # The GGUF delete, as ever: its files only.
    assert (repo_cache() / "snapshots" / hub.commit_sha(REPO) / "config.json").is_file()
    library.delete(REPO)
    assert not repo_cache().exists()


def test_rm_through_the_server_and_the_cli(hub: FakeHub, tmp_path: Path) -> None:
    with (
        running_server(tmp_path, env={"HF_HUB_DISABLE_XET": "1"}) as server,
        httpx.Client(base_url=server.base_url, timeout=120) as api,
    ):

        def names() -> tuple[set[str], set[str]]:
            tags = {m["name"] for m in api.get("/api/tags").json()["models"]}
            return tags, {m["id"] for m in api.get("/v1/models").json()["data"]}

        cli = {**os.environ, "LLMPORT_HOST": server.base_url.removeprefix("http://")}
        for name in (REPO, f"hf.co/{REPO}"):
            pulled = api.post("/api/pull", json={"model": f"hf.co/{REPO}", "stream": False})
            assert pulled.is_success, pulled.text
            assert all(f"hf.co/{REPO}" in listed for listed in names())
            if name == REPO:
                assert api.request("DELETE", "/api/delete", json={"model": name}).is_success
            else:
                rm = [sys.executable, "-m", "llmport.cli.main", "rm", name]
                done = subprocess.run(rm, capture_output=True, text=True, env=cli, timeout=60)
                assert done.returncode == 0 and f"deleted '{name}'" in done.stdout, done.stderr
            assert not repo_cache().exists()
            assert not any(f"hf.co/{REPO}" in listed for listed in names())
            missing = api.request("DELETE", "/api/delete", json={"model": name})
            assert missing.status_code == 404 and f"model '{name}' not found" in missing.text
