"""A worker whose machine lacks the model's files (a cluster node with its own disk)
fetches them with the store's own pull, under its own LLMPORT_HOME, and loads them."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import close_session

from fake_hub import FakeHub
from llmport.config import EngineConfig
from llmport.engine.registry import LoadTarget, MemoryEstimate
from llmport.errors import ModelNotFound
from llmport.models.resolver import Resolver
from llmport.runtime.base import LOCAL_NODE
from llmport.runtime.files import localize
from llmport.runtime.local import LocalRuntime
from llmport.store.pull import pull
from llmport.store.registry import Registry
from llmport.types import Request, SamplingParams
from tiny_model import write_tiny_model

REPO = "tester/node-GGUF"


@pytest.fixture
def model_bytes(tmp_path: Path) -> bytes:
    return write_tiny_model(tmp_path / "node-Q8_0.gguf", seed=5).read_bytes()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_bytes: bytes) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        hub.add_file(REPO, "node-Q8_0.gguf", model_bytes)
        hub.patch_client(monkeypatch, tmp_path / "hf")
        monkeypatch.setenv("LLMPORT_HOME", str(tmp_path / "node-home"))
        yield hub
        close_session()


def test_files_that_are_here_are_used_as_they_are(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "here.gguf", seed=1)
    target = LoadTarget(weight_files=[str(path)], fetch_ref="hf.co/never/fetched:Q8_0")
    assert localize(target) is target


def test_missing_files_that_cannot_be_fetched_are_named(tmp_path: Path) -> None:
    target = LoadTarget(weight_files=[str(tmp_path / "elsewhere.gguf")])
    with pytest.raises(ModelNotFound, match=r"elsewhere\.gguf is not on this worker.s machine"):
        localize(target)


def test_a_pulled_model_is_fetched_again_where_it_is_missing(
    hub: FakeHub, tmp_path: Path, model_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's machine pulled it; its spec says how a node fetches it.
    server_home = tmp_path / "server-home"  # (and the Hugging Face cache tmp_path/hf)
    pull(f"hf.co/{REPO}:Q8_0", Registry(server_home))
    spec = Resolver(server_home).resolve_now(f"hf.co/{REPO}:Q8_0")
    assert spec.fetch_ref == f"hf.co/{REPO}:Q8_0"
    # A node with a disk of its own: another Hugging Face cache, another LLMPORT_HOME.
    hub.patch_client(monkeypatch, tmp_path / "node-hf")
    missing = LoadTarget(weight_files=[str(tmp_path / "gone" / "node-Q8_0.gguf")],
                         fetch_ref=spec.fetch_ref)  # fmt: skip

    async def load_and_generate() -> str:
        runtime = LocalRuntime(warm_spare=False)  # Its worker inherits LLMPORT_HOME.
        client = await runtime.start("llama_cpp", missing, EngineConfig(max_model_len=256),
                                     MemoryEstimate(0, 0, 0, 0), LOCAL_NODE)  # fmt: skip
        try:
            params = SamplingParams(max_tokens=3, temperature=0, ignore_eos=True)
            request = Request(request_id="r", prompt="a", params=params)
            return "".join([out.text async for out in client.generate(request)])
        finally:
            await client.close()

    assert not list((tmp_path / "node-hf").rglob("*.gguf"))
    assert asyncio.run(load_and_generate()) is not None
    assert list((tmp_path / "node-hf").rglob("node-Q8_0.gguf"))  # The worker fetched it.
    fetched = localize(missing)  # The worker's pull left it in the node's own store.
    (path,) = fetched.weight_files
    assert path.startswith(str(tmp_path / "node-hf"))
    assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(model_bytes).digest()


def test_a_hugging_face_cache_snapshot_is_fetched_by_its_repo(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--org--tiny-llama" / "snapshots" / "abc123"
    spec = Resolver(tmp_path / "home").resolve_now(
        str(write_tiny_model(tmp_path / "plain.gguf", seed=2))
    )
    assert spec.fetch_ref == ""  # A plain file: only this machine has it.
    moved = type(spec)(name="org/tiny-llama", format="hf", weight_files=(snapshot,),
                       source="hf_cache", record=spec.record)  # fmt: skip
    assert moved.fetch_ref == "hf.co/org/tiny-llama"
