"""``/v1/rerank`` and ``/rerank`` (results sorted by relevance) and ``/v1/score`` (scores in
pair order). Each (query, document) pair is one ``embed`` request through the shared
serving path, so pairs are batched by the engine beside any other work; a reranker's
engine returns its classifier's scores instead of an embedding."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request

from llmport.api import serving
from llmport.api.json_body import JsonRoute
from llmport.api.rerank import protocol as p
from llmport.api.serving import Delta
from llmport.api.state import app_state
from llmport.api.streaming import until_disconnect
from llmport.errors import InvalidParameter
from llmport.manager.keep_alive import parse_keep_alive
from llmport.models.spec import ModelSpec
from llmport.types import GenerationRequest, SamplingParams

router = APIRouter(route_class=JsonRoute)
#: Architectures whose rank pooling reads the last token (llama.cpp's choice), which is
#: what the engine hands it; first-token (BERT-style) rerankers need the whole pair in one
#: batch, which the engine's chunked prefill does not promise.
LAST_TOKEN_RANKERS = frozenset({"qwen3", "qwen3vl"})
#: Where a pair goes in a reranker without a rerank template.
DEFAULT_LAYOUT = "{query}\n{document}"


@router.post("/v1/rerank")
@router.post("/rerank")
async def rerank(body: p.RerankRequest, request: Request) -> dict[str, Any]:
    texts = [p.document_text(d) for d in body.documents]
    scores, num_tokens = await _score(request, body.model, [(body.query, t) for t in texts],
                                      body.keep_alive)  # fmt: skip
    order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)[: body.top_n]
    results = [
        p.rerank_result(i, scores[i], texts[i] if body.return_documents else None) for i in order
    ]
    usage = {"prompt_tokens": num_tokens, "total_tokens": num_tokens}
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": body.model, "usage": usage,
            "results": results}  # fmt: skip


@router.post("/v1/score")
async def score(body: p.ScoreRequest, request: Request) -> dict[str, Any]:
    firsts = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    seconds = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    if len(firsts) == 1:
        firsts = firsts * len(seconds)
    if not seconds or len(firsts) != len(seconds):
        raise InvalidParameter(
            "text_2 must be one or more texts, as many as text_1 unless text_1 is one",
            param="text_2",
        )
    scores, num_tokens = await _score(request, body.model, list(zip(firsts, seconds, strict=True)),
                                      body.keep_alive)  # fmt: skip
    data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
    return {"id": f"score-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
            "model": body.model, "data": data,
            "usage": {"prompt_tokens": num_tokens, "total_tokens": num_tokens}}  # fmt: skip


async def _score(
    request: Request, name: str, pairs: list[tuple[str, str]], keep_alive: str | float | None
) -> tuple[list[float], int]:
    """Each pair's relevance score (the classifier's first output), and the tokens read."""
    spec = await app_state(request).resolver.resolve(name)
    layout = _layout(spec)
    seconds = parse_keep_alive(keep_alive)
    base = uuid.uuid4().hex
    requests = [
        GenerationRequest(
            request_id=f"rerank-{base}-{i}",
            model=name,
            params=SamplingParams(),
            prompt=layout.replace("{query}", query).replace("{document}", document),
            keep_alive=seconds,
            embed=True,
            is_chat=False,
        )
        for i, (query, document) in enumerate(pairs)
    ]
    scores: dict[int, float] = {}
    counts = {"tokens": 0}

    def add(index: int, delta: Delta) -> None:
        if not delta.model.engine.info.is_reranker:
            raise InvalidParameter(f"model {name!r} is not a reranker", param="model")
        if delta.output.embedding:
            scores[index] = delta.output.embedding[0]
        counts["tokens"] += delta.output.usage.prompt_tokens if delta.output.usage else 0

    stream = await serving.start(request, spec, requests)
    await until_disconnect(request, serving.consume(stream, add))
    return [scores[i] for i in range(len(pairs))], counts["tokens"]


def _layout(spec: ModelSpec) -> str:
    """The pair's layout; a model that is not a supported reranker is refused here, before
    it is loaded."""
    if not spec.is_reranker:
        raise InvalidParameter(
            f"model {spec.name!r} is not a reranker (a GGUF with rank pooling, such as a "
            "Qwen3-Reranker conversion); it can embed or generate instead",
            param="model",
        )
    if spec.architecture not in LAST_TOKEN_RANKERS:
        raise InvalidParameter(
            f"model {spec.name!r} is a {spec.architecture} reranker; llmport serves rerankers "
            f"that pool the last token ({', '.join(sorted(LAST_TOKEN_RANKERS))})",
            param="model",
        )
    return spec.rerank_template or DEFAULT_LAYOUT
