"""Rerank and score on a tiny reranker GGUF built here (rank pooling, a known classifier
head): the order and the scores are the model's, computed from its weights; pairs batch
with generation on one engine; every bad input is a 400."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from dialect_models import RERANK_TEMPLATE, write_reasoning_model, write_reranker_model
from server_helpers import Server, running_server

#: A loaded machine may take a while over a model's first load.
post = functools.partial(httpx.post, timeout=60)

QUERY = "which fruit is red?"
DOCUMENTS = ["an apple", "a banana", "the sky", "some grapes", "a lemon", "a fig", "a plum x"]


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, npt.NDArray[np.float64]]:
    path, scores = write_reranker_model(tmp_path_factory.mktemp("rerank") / "rerank.gguf")
    return str(path), scores


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("rerank-server")) as s:
        yield s


def expected_scores(
    server: Server, reranker: tuple[str, npt.NDArray[np.float64]], documents: list[str]
) -> list[float]:
    """The head's score for each pair's last token (the tokenizer decides which it is)."""
    model, table = reranker
    out = []
    for document in documents:
        prompt = RERANK_TEMPLATE.format(query=QUERY, document=document)
        body = {"model": model, "prompt": prompt}
        tokens = post(f"{server.base_url}/tokenize", json=body).json()["tokens"]
        out.append(float(table[tokens[-1]]))
    return out


def test_rerank_orders_by_the_models_scores(
    server: Server, reranker: tuple[str, npt.NDArray[np.float64]]
) -> None:
    expected = expected_scores(server, reranker, DOCUMENTS)
    assert len(set(expected)) == len(DOCUMENTS)  # Distinct, so the order is meaningful.
    body = {"model": reranker[0], "query": QUERY, "documents": DOCUMENTS}
    answer = post(f"{server.base_url}/v1/rerank", json=body).json()
    results = answer["results"]
    assert [r["index"] for r in results] == sorted(
        range(len(DOCUMENTS)), key=lambda i: expected[i], reverse=True
    )
    for result in results:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-5)
        assert result["document"] == {"text": DOCUMENTS[result["index"]]}
    assert answer["usage"]["total_tokens"] > len(DOCUMENTS) * 5
    short = post(
        f"{server.base_url}/rerank",
        json={**body, "documents": [{"text": d} for d in DOCUMENTS], "top_n": 2,
              "return_documents": False},
    ).json()["results"]  # fmt: skip
    assert short == [{k: v for k, v in r.items() if k != "document"} for r in results[:2]]


def test_score_gives_each_pair_in_order(
    server: Server, reranker: tuple[str, npt.NDArray[np.float64]]
) -> None:
    expected = expected_scores(server, reranker, DOCUMENTS[:3])
    body = {"model": reranker[0], "text_1": QUERY, "text_2": DOCUMENTS[:3]}
    data = post(f"{server.base_url}/v1/score", json=body).json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert [d["score"] for d in data] == pytest.approx(expected, abs=1e-5)
    pairwise = {"model": reranker[0], "text_1": [QUERY] * 2, "text_2": DOCUMENTS[:2]}
    data = post(f"{server.base_url}/v1/score", json=pairwise).json()["data"]
    assert [d["score"] for d in data] == pytest.approx(expected[:2], abs=1e-5)


def test_32_concurrent_reranks_share_the_engine_with_generation(
    server: Server, reranker: tuple[str, npt.NDArray[np.float64]]
) -> None:
    model = reranker[0]
    expected = expected_scores(server, reranker, DOCUMENTS)

    async def one_rerank(client: httpx.AsyncClient, i: int) -> list[float]:
        documents = DOCUMENTS[i % 3 :]
        body = {"model": model, "query": QUERY, "documents": documents}
        response = await client.post("/v1/rerank", json=body)
        assert response.status_code == 200, response.text
        by_index = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        return [by_index[j] for j in range(len(documents))]

    async def one_generation(client: httpx.AsyncClient, i: int) -> str | None:
        body = {"model": model, "prompt": f"go {i}", "max_tokens": 24, "ignore_eos": True}
        response = await client.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        reason: str | None = response.json()["choices"][0]["finish_reason"]
        return reason

    async def main() -> tuple[list[Any], list[Any]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            generations = [one_generation(client, i) for i in range(8)]
            reranks = [one_rerank(client, i) for i in range(32)]
            done = await asyncio.gather(*generations, *reranks)
        return list(done[:8]), list(done[8:])

    reasons, scores = asyncio.run(main())
    assert reasons == ["length"] * 8
    for i, got in enumerate(scores):
        assert got == pytest.approx(expected[i % 3 :], abs=1e-5)


def test_show_says_what_each_model_can_do(
    server: Server, reranker: tuple[str, npt.NDArray[np.float64]], tiny_model_path: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    def capabilities(model: str) -> list[str]:
        shown = post(f"{server.base_url}/api/show", json={"model": model}).json()
        found: list[str] = shown["capabilities"]
        return found

    assert capabilities(reranker[0]) == ["rerank"]
    assert capabilities(str(tiny_model_path)) == ["completion", "embedding"]
    thinker = write_reasoning_model(tmp_path / "think.gguf")
    assert "thinking" in capabilities(str(thinker))


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/rerank", {"model": "TINY", "query": "q", "documents": ["d"]}, "not a reranker"),
        ("/v1/score", {"model": "TINY", "text_1": "q", "text_2": "d"}, "not a reranker"),
        ("/v1/rerank", {"model": "RERANKER", "query": "q", "documents": []}, "documents"),
        ("/v1/rerank", {"model": "RERANKER", "documents": ["d"]}, "query"),
        ("/v1/rerank", {"model": "RERANKER", "query": "q", "documents": [5]}, "documents"),
        ("/v1/rerank", {"model": "RERANKER", "query": "q", "documents": ["d"], "top_n": 0},
         "top_n"),
        ("/rerank", {"query": "q", "documents": ["d"]}, "model"),
        ("/v1/score", {"model": "RERANKER", "text_1": ["a", "b"], "text_2": ["c", "d", "e"]},
         "text_2"),
        ("/v1/score", {"model": "RERANKER", "text_1": "a", "text_2": []}, "text_2"),
        ("/v1/rerank", {"model": "no-such-model", "query": "q", "documents": ["d"]}, "not found"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx(
    server: Server, reranker: tuple[str, npt.NDArray[np.float64]], tiny_model_path: Path,
    path: str, body: dict[str, Any], says: str,
) -> None:  # fmt: skip
    names = {"TINY": str(tiny_model_path), "RERANKER": reranker[0]}
    body = {k: names.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = post(f"{server.base_url}{path}", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert says in response.json()["error"]["message"]
