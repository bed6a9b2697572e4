"""Pulls from a local fake Hub with the real huggingface_hub: quants, splits, resume, sha256."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import close_session, constants

from fake_hub import FakeHub
from llmport.errors import ChecksumMismatch, InsufficientStorage, InvalidParameter, ModelNotFound
from llmport.store import download as download_module
from llmport.store.pull import Progress, pull
from llmport.store.refs import resolve_model
from llmport.store.registry import Registry
from tiny_model import write_tiny_model

REPO = "tester/tiny-GGUF"
QUANTS = {"Q4_K_M": 1, "Q8_0": 2, "F16": 3}


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A repo as quantizers publish them: a file per quant, one quant split in two."""
    folder = tmp_path_factory.mktemp("repo")
    files = {
        f"tiny-{quant}.gguf": write_tiny_model(
            folder / f"tiny-{quant}.gguf", seed=seed
        ).read_bytes()
        for quant, seed in QUANTS.items()
    }
    (folder / "split").mkdir()
    first = write_tiny_model(folder / "split" / "tiny-Q6_K.gguf", seed=4, split_max_tensors=12)
    for shard in sorted(first.parent.iterdir()):
        files[f"Q6_K/{shard.name}"] = shard.read_bytes()
    files["README.md"] = b"# tiny\n"
    files["mmproj-tiny-F16.gguf"] = b"not a model"
    return files


@pytest.fixture
def hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_files: dict[str, bytes]
) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        for name, data in repo_files.items():
            hub.add_file(REPO, name, data, lfs=name.endswith(".gguf"))
        hub.patch_client(monkeypatch, tmp_path / "hf")
        monkeypatch.setattr(download_module.time, "sleep", lambda _: None)
        yield hub
        close_session()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "home")


def downloads(hub: FakeHub, filename: str) -> list[str | None]:
    path = f"/{REPO}/resolve/{hub.commit_sha(REPO)}/{filename}"
    return [rng for method, p, rng in hub.requests if method == "GET" and p == path]


@pytest.mark.parametrize("tag", ["Q8_0", "q8_0"])
def test_pull_by_quant_registers_verified_bytes(
    hub: FakeHub, registry: Registry, repo_files: dict[str, bytes], tag: str
) -> None:
    record = pull(f"hf.co/{REPO}:{tag}", registry)
    assert record.name == f"hf.co/{REPO}:Q8_0"
    assert record.path.read_bytes() == repo_files["tiny-Q8_0.gguf"]
    assert record.digest == hashlib.sha256(repo_files["tiny-Q8_0.gguf"]).hexdigest()
    assert record.metadata["architecture"] == "llama" and record.metadata["quant"] == "Q8_0"
    # The Hugging Face cache layout, shared with other tools.
    cache = Path(constants.HF_HUB_CACHE) / "models--tester--tiny-GGUF"
    assert record.path == cache / "snapshots" / hub.commit_sha(REPO) / "tiny-Q8_0.gguf"
    assert record.path.resolve() == cache / "blobs" / record.digest
    assert registry.get(f"hf.co/{REPO}:Q8_0") is not None


def test_pull_without_a_quant_takes_q4_k_m_and_says_so(
    hub: FakeHub, registry: Registry, tmp_path: Path
) -> None:
    record = pull(f"huggingface.co/{REPO}", registry)
    assert record.name == f"hf.co/{REPO}:latest"
    assert record.metadata["quant"] == "Q4_K_M"
    assert resolve_model(f"hf.co/{REPO}", registry.path.parent) == record.path


def test_pull_of_a_split_model_fetches_every_shard_and_llama_cpp_loads_it(
    hub: FakeHub, registry: Registry
) -> None:
    from llmport.llm import LLM
    from llmport.types import SamplingParams

    record = pull(f"hf.co/{REPO}:Q6_K", registry)
    assert [Path(f.path).name for f in record.files] == [
        "tiny-Q6_K-00001-of-00002.gguf",
        "tiny-Q6_K-00002-of-00002.gguf",
    ]
    with LLM(record.path, max_model_len=256) as llm:
        result = llm.generate(["hi"], SamplingParams(max_tokens=3, temperature=0))
    assert len(result[0].outputs[0].token_ids) == 3


def test_an_unknown_quant_lists_the_quants_the_repo_has(hub: FakeHub, registry: Registry) -> None:
    with pytest.raises(ModelNotFound) as caught:
        pull(f"hf.co/{REPO}:Q2_K", registry)
    assert "F16, Q4_K_M, Q6_K, Q8_0" in caught.value.message


def test_an_unknown_repo_is_model_not_found(hub: FakeHub, registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match="not found"):
        pull("hf.co/tester/nothing-here", registry)


@pytest.mark.parametrize(
    "ref", ["hf.co/../etc:Q8_0", "hf.co/a/b/c", "hf.co/tester/x:../../y", "hf.co//abs", "hf.co/a"]
)
def test_references_that_could_escape_the_store_are_refused(ref: str, registry: Registry) -> None:
    with pytest.raises(InvalidParameter):
        pull(ref, registry)


def test_a_dropped_connection_resumes_with_a_range_request(
    hub: FakeHub, registry: Registry, repo_files: dict[str, bytes]
) -> None:
    data = repo_files["tiny-F16.gguf"]
    hub.drop_after(REPO, "tiny-F16.gguf", len(data) // 2, times=2)
    seen: list[Progress] = []
    record = pull(f"hf.co/{REPO}:F16", registry, seen.append)
    assert record.path.read_bytes() == data
    ranges = downloads(hub, "tiny-F16.gguf")
    assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"
    assert seen[-1].status == "success"
    pulled = [p for p in seen if p.total]
    assert pulled[-1].completed == pulled[-1].total == len(data)


def test_bytes_that_do_not_match_the_sha256_are_rejected_and_nothing_registered(
    hub: FakeHub, registry: Registry
) -> None:
    hub.corrupt(REPO, "tiny-Q8_0.gguf")
    with pytest.raises(ChecksumMismatch, match="sha256"):
        pull(f"hf.co/{REPO}:Q8_0", registry)
    assert registry.get(f"hf.co/{REPO}:Q8_0") is None
    cache = Path(constants.HF_HUB_CACHE) / "models--tester--tiny-GGUF" / "blobs"
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]


def test_two_pulls_of_one_file_at_once_download_it_once(hub: FakeHub, registry: Registry) -> None:
    errors: list[BaseException] = []

    def one() -> None:
        try:
            pull(f"hf.co/{REPO}:F16", registry)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(downloads(hub, "tiny-F16.gguf")) == 1


def test_offline_mode_uses_what_is_cached(
    hub: FakeHub, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = pull(f"hf.co/{REPO}:Q8_0", registry)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests_before = len(hub.requests)
    again = pull(f"hf.co/{REPO}:Q8_0", registry)
    assert again.path == first.path and len(hub.requests) == requests_before
    with pytest.raises(ModelNotFound, match="has no Q4_K_M file"):
        pull(f"hf.co/{REPO}:Q4_K_M", registry)


def test_not_enough_disk_is_refused_before_downloading(
    hub: FakeHub, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(InsufficientStorage, match="GiB free"):
        pull(f"hf.co/{REPO}:F16", registry)
    assert downloads(hub, "tiny-F16.gguf") == []


def test_the_default_quant_is_announced(hub: FakeHub, registry: Registry) -> None:
    seen: list[Progress] = []
    pull(f"hf.co/{REPO}", registry, seen.append)
    assert any("using Q4_K_M" in p.status for p in seen)


def test_the_python_llm_pulls_what_it_lacks_as_vllm_does(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmport.llm import LLM
    from llmport.types import SamplingParams

    monkeypatch.setenv("LLMPORT_HOME", str(tmp_path / "llm-home"))
    with LLM(f"hf.co/{REPO}:Q8_0", max_model_len=256) as llm:
        out = llm.generate(["hi"], SamplingParams(max_tokens=2, temperature=0))
    assert len(out[0].outputs[0].token_ids) == 2
    assert Registry(tmp_path / "llm-home").get(f"hf.co/{REPO}:Q8_0") is not None
    with pytest.raises(ModelNotFound):
        LLM("hf.co/tester/not-there")
