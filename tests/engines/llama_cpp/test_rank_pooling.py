"""Rank pooling: a reranker GGUF's embed requests return its classifier's scores (real
llama.cpp, a tiny reranker whose scores are computed from its weights), and a rank or
embedding pass in the same step as sampled generation leaves that sampling intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialect_models import RERANK_TEMPLATE, write_reranker_model
from engine_helpers import joined, make_engine, request, run_all
from llmport.types import Request


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return write_reranker_model(tmp_path_factory.mktemp("rank") / "rerank.gguf")


def test_rank_requests_return_the_heads_scores(reranker: tuple[Path, object]) -> None:
    path, table = reranker
    engine = make_engine(path)
    prompts = [RERANK_TEMPLATE.format(query="q", document=d) for d in ("apple", "sky", "fig")]
    for i, prompt in enumerate(prompts):
        engine.add_request(Request(request_id=str(i), prompt=prompt, embed=True))
    outputs = run_all(engine)
    for i, prompt in enumerate(prompts):
        last = engine.backend.tokenize(prompt, True)[-1]
        scores = outputs[str(i)][0].embedding
        assert scores is not None and len(scores) == 2  # yes, no: not normalized
        assert scores[0] == pytest.approx(table[last], abs=1e-5)  # type: ignore[index]
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    engine.close()


@pytest.mark.parametrize("embed_first", [False, True])
def test_sampled_generation_is_unchanged_by_a_rank_pass_in_its_step(
    reranker: tuple[Path, object], tiny_model_path: Path, embed_first: bool
) -> None:
    """Sampler chains read this step's logits, not llama.cpp's output buffer, which the
    embedding pass of the same step overwrites."""
    for path in (reranker[0], tiny_model_path):
        engine = make_engine(path)
        sampled = {"temperature": 1.0, "seed": 7, "max_tokens": 12, "ignore_eos": True}
        engine.add_request(request("alone", "tell me", **sampled))
        alone = joined(run_all(engine)["alone"])[1]
        engine.reset_prefix_cache()
        embeds = [Request(request_id=f"e{i}", prompt=f"pair {i} x", embed=True) for i in range(3)]
        if embed_first:
            for embed in embeds:
                engine.add_request(embed)
        engine.add_request(request("mixed", "tell me", **sampled))
        if not embed_first:
            for embed in embeds:
                engine.add_request(embed)
        outputs = run_all(engine)
        assert joined(outputs["mixed"])[1] == alone
        assert all(outputs[f"e{i}"][0].embedding for i in range(3))
        engine.close()
