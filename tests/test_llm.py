"""The vLLM-shaped public API: ``from llmport import LLM, SamplingParams``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmport import LLM, AsyncLLM, SamplingParams
from llmport.errors import ModelNotFound
from llmport.types import FinishReason


def test_generate_returns_one_result_per_prompt_in_order(tiny_model_path: Path) -> None:
    with LLM(tiny_model_path, max_model_len=512) as llm:
        params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
        results = llm.generate(["first prompt", "second", "third one here"], params)
        single = llm.generate("second", params)
    assert [r.prompt for r in results] == ["first prompt", "second", "third one here"]
    for result in results:
        assert result.finished and result.prompt_token_ids
        (choice,) = result.outputs
        assert len(choice.token_ids) == 6
        assert choice.finish_reason is FinishReason.LENGTH
    assert single[0].outputs[0].token_ids == results[1].outputs[0].token_ids


def test_generate_accepts_token_ids_and_n(tiny_model_path: Path) -> None:
    with LLM(tiny_model_path, max_model_len=512) as llm:
        (result,) = llm.generate([[276, 258, 266]], SamplingParams(n=2, max_tokens=4, seed=1))
    assert result.prompt_token_ids == [276, 258, 266]
    assert [c.index for c in result.outputs] == [0, 1]
    assert all(len(c.token_ids) > 0 for c in result.outputs)


def test_stream_yields_text_pieces(tiny_model_path: Path) -> None:
    with LLM(tiny_model_path, max_model_len=512) as llm:
        params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
        streamed = "".join(llm.stream("stream me", params))
        (whole,) = llm.generate("stream me", params)
    assert streamed == whole.outputs[0].text


def test_async_llm_streams_cumulative_results(tiny_model_path: Path) -> None:
    async def main() -> list[str]:
        llm = await AsyncLLM.start(tiny_model_path, max_model_len=512)
        try:
            params = SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)
            return [out.outputs[0].text async for out in llm.generate("async", params)]
        finally:
            await llm.close()

    texts = asyncio.run(main())
    assert len(texts) == 5
    assert all(texts[i + 1].startswith(texts[i]) for i in range(4))


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        LLM(tmp_path / "nope.gguf")
