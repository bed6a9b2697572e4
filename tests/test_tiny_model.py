"""The tiny test model loads, tokenizes and generates in real llama.cpp."""

from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from tiny_model import BOS_ID, EOS_ID, NUM_BYTE_TOKENS, VOCAB_SIZE, write_tiny_model


@pytest.fixture(scope="module")
def llm(tiny_model_path: Path) -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(model_path=str(tiny_model_path), n_ctx=256, verbose=False)
    yield model
    model.close()


def test_file_is_small(tiny_model_path: Path) -> None:
    assert tiny_model_path.stat().st_size < 512 * 1024


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = write_tiny_model(tmp_path / "a.gguf", seed=7).read_bytes()
    second = write_tiny_model(tmp_path / "b.gguf", seed=7).read_bytes()
    other = write_tiny_model(tmp_path / "c.gguf", seed=8).read_bytes()
    assert first == second
    assert first != other


def test_vocab_and_special_tokens(llm: llama_cpp.Llama) -> None:
    assert llm.n_vocab() == VOCAB_SIZE
    assert llm.token_bos() == BOS_ID
    assert llm.token_eos() == EOS_ID


def test_hello_world_uses_merges_and_round_trips(llm: llama_cpp.Llama) -> None:
    token_ids = llm.tokenize(b"hello world")
    assert token_ids[0] == BOS_ID
    assert any(t >= NUM_BYTE_TOKENS for t in token_ids[1:])
    assert len(token_ids) - 1 < len("hello world")
    assert llm.detokenize(token_ids) == b"hello world"


def test_non_ascii_round_trips(llm: llama_cpp.Llama) -> None:
    text = "héllo ✓"
    token_ids = llm.tokenize(text.encode(), add_bos=False)
    assert llm.detokenize(token_ids).decode() == text


def test_special_tokens_parse_only_when_asked(llm: llama_cpp.Llama) -> None:
    assert llm.tokenize(b"</s>", add_bos=False, special=True) == [EOS_ID]
    assert EOS_ID not in llm.tokenize(b"</s>", add_bos=False, special=False)


def test_greedy_completion_is_deterministic(llm: llama_cpp.Llama) -> None:
    def complete() -> str:
        result = llm.create_completion("hello", max_tokens=8, temperature=0)
        assert isinstance(result, dict)
        return result["choices"][0]["text"]

    first = complete()
    assert first == complete()
    assert first


def test_chat_template_and_context_length_are_written(tmp_path: Path) -> None:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    path = write_tiny_model(tmp_path / "chat.gguf", n_ctx_train=512, chat_template=template)
    model = llama_cpp.Llama(model_path=str(path), n_ctx=0, verbose=False)
    try:
        assert model.metadata["tokenizer.chat_template"] == template
        assert model.n_ctx() == 512
    finally:
        model.close()
