"""Embedding requests ride the same batches as generation (real llama.cpp, tiny model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine_helpers import joined, make_engine, request, run_all
from llmport.errors import ContextLengthExceeded
from llmport.types import FinishReason, Request


def embed(rid: str, prompt: str) -> Request:
    return Request(request_id=rid, prompt=prompt, embed=True)


def test_embedding_is_normalized_deterministic_and_batch_independent(
    tiny_model_path: Path,
) -> None:
    engine = make_engine(tiny_model_path)
    engine.add_request(embed("alone", "the cat sat on the mat"))
    alone = run_all(engine)["alone"]
    assert len(alone) == 1 and alone[0].finish_reason is FinishReason.STOP
    vector = np.array(alone[0].embedding)
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-6
    assert alone[0].usage is not None and alone[0].usage.completion_tokens == 0

    engine.reset_prefix_cache()
    engine.add_request(request("gen", "some other prompt", max_tokens=8, ignore_eos=True))
    engine.add_request(embed("again", "the cat sat on the mat"))
    engine.add_request(embed("other", "a different sentence"))
    outputs = run_all(engine)
    assert len(joined(outputs["gen"])[1]) == 8
    assert np.allclose(outputs["again"][0].embedding or [], vector, atol=1e-4)
    assert not np.allclose(outputs["other"][0].embedding or [], vector, atol=1e-2)
    assert engine.num_requests == 0
    engine.close()


def test_an_embedding_input_longer_than_the_context_is_refused(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path, max_num_kv_tokens=64)
    with pytest.raises(ContextLengthExceeded):
        engine.add_request(embed("long", "word " * 200))
    engine.close()
