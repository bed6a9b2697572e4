"""``--engine auto|llama.cpp|vllm``: where a name leads to both formats the forced engine's
files are taken; a model the forced engine cannot load is refused in one line at start
and with a 400 naming ``model`` (and the flag) for a request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hf_cache import put_in_hf_cache
from huggingface_hub import constants
from test_vllm_cli import serve

from llmport.cli.serve import _forced_engine
from llmport.errors import UnsupportedOption
from llmport.models.engine_choice import EngineChoice, ForcedEngine
from llmport.models.resolver import Resolver
from llmport.store.registry import ModelFile, ModelRecord, Registry
from server_helpers import running_server

REPO = "tester/both"


def forced(engine: str) -> ForcedEngine | None:
    return _forced_engine(EngineChoice(engine=engine))  # type: ignore[arg-type]


@pytest.fixture
def both(tmp_path: Path, hf_llama: Path, tiny_model_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Path:  # fmt: skip
    """A home where ``hf.co/tester/both`` is a registered GGUF pull and the same repo's
    safetensors are in the Hugging Face cache."""
    home = tmp_path / "home"
    size = tiny_model_path.stat().st_size
    Registry(home).put(ModelRecord(name=f"hf.co/{REPO}:latest", source=f"hf.co/{REPO}",
                                   files=[ModelFile(str(tiny_model_path), "", size)]))  # fmt: skip
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    put_in_hf_cache(tmp_path / "hub", REPO, hf_llama)
    return home


def test_a_forced_engine_picks_its_files_where_a_name_has_both(both: Path) -> None:
    name = f"hf.co/{REPO}"
    assert Resolver(both).resolve_now(name).format == "gguf"  # auto: the pulled GGUF.
    assert forced("auto") is None
    assert Resolver(both, forced=forced("llama.cpp")).resolve_now(name).format == "gguf"
    assert Resolver(both, forced=forced("vllm")).resolve_now(name).format == "hf"
    assert Resolver(both, forced=forced("vllm")).resolve_now(REPO).format == "hf"


def test_a_model_the_forced_engine_cannot_load_is_refused_naming_the_flag(
    tmp_path: Path, hf_llama: Path, tiny_model_path: Path
) -> None:
    with pytest.raises(UnsupportedOption, match=r"^--engine vllm: .* is a GGUF file") as gguf:
        Resolver(tmp_path, forced=forced("vllm")).resolve_now(str(tiny_model_path))
    assert gguf.value.param == "model" and gguf.value.status == 400
    with pytest.raises(UnsupportedOption, match=r"^--engine llama.cpp: .* safetensors model"):
        Resolver(tmp_path, forced=forced("llama.cpp")).resolve_now(str(hf_llama))


def test_serve_refuses_at_start_in_one_line(hf_llama: Path, tiny_model_path: Path) -> None:
    for model, engine in ((tiny_model_path, "vllm"), (hf_llama, "llama.cpp")):
        result = serve(f"{model} --engine {engine} --port 1")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: --engine {engine}: model "), result.stderr
        assert result.stderr.count("\n") == 1
    result = serve("--engine tpu --port 1")
    assert result.returncode == 2 and "'auto', 'llama.cpp' or 'vllm'" in result.stderr


def test_a_request_for_a_model_the_forced_engine_cannot_load_is_a_400(
    tmp_path: Path, hf_llama: Path, tiny_model_path: Path
) -> None:
    with running_server(tmp_path, "--engine", "vllm") as server:
        body = {"model": str(tiny_model_path), "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{server.openai_url}/chat/completions", json=body)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "model" and error["message"].startswith("--engine vllm:")
        shown = httpx.post(f"{server.base_url}/api/show", json={"model": str(hf_llama)})
        assert shown.status_code == 200 and shown.json()["details"]["format"] == "safetensors"
