"""OpenAI routes. Each converts its body to GenerationRequests, runs the shared serving
path, and shapes the deltas back into OpenAI's JSON or server-sent events.

The first delta is awaited before the response starts, so a refused request (unknown
model, prompt too long, bad parameter, full queue) answers with its own status code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmport.api import serving
from llmport.api.answer import reasoning_parser_name
from llmport.api.errors import error_body
from llmport.api.images import request_images
from llmport.api.json_body import JsonRoute
from llmport.api.limits import check_requests, check_text
from llmport.api.openai import convert
from llmport.api.openai import protocol as p
from llmport.api.openai.chat_builder import ChatBuilder
from llmport.api.serving import Delta
from llmport.api.state import app_state
from llmport.api.streaming import DONE, sse, until_disconnect
from llmport.config import RequestLimits
from llmport.errors import LlmportError, ModelNotFound
from llmport.manager.loaded import LoadedModel
from llmport.types import GenerationRequest, SamplingParams, check_token_ids

router = APIRouter(route_class=JsonRoute)

Tagged = serving.Tagged
EventBuilder = Callable[[int, Delta], list[str]]


@router.get("/v1/models")
async def list_models(request: Request) -> p.ModelList:
    return p.ModelList(data=list((await _model_cards(request)).values()))


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> p.ModelCard:
    """The OpenAI SDK's ``models.retrieve``: a name ``/v1/models`` lists, else 404."""
    card = (await _model_cards(request)).get(model)
    if card is None:
        raise ModelNotFound(f"model {model!r} not found", param="model")
    return card


async def _model_cards(request: Request) -> dict[str, p.ModelCard]:
    state = app_state(request)
    cards = {m.name: _loaded_card(m) for m in state.manager.loaded()}
    for spec in state.manager.loading():
        cards.setdefault(spec.name, p.ModelCard(id=spec.name, state="loading"))
    for name in await asyncio.to_thread(state.resolver.names):
        cards.setdefault(name, p.ModelCard(id=name))
    return cards


def _loaded_card(model: LoadedModel) -> p.ModelCard:
    info = model.engine.info
    return p.ModelCard(id=model.name, max_model_len=model.max_model_len, engine=info.kind,
                       device=info.device, node=model.node.name, state=model.state)  # fmt: skip


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: p.CompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    spec = await app_state(request).resolver.resolve(body.model)
    requests = convert.to_completion_requests(body)
    stream = await serving.start(request, spec, requests)
    prompts = [r.prompt or "" for r in requests] if body.echo else None
    builder = _CompletionBuilder(body, requests[0].request_id, prompts)
    if body.stream:
        return _event_stream(stream, builder.chunks, builder.usage_chunk, body)
    await until_disconnect(request, serving.consume(stream, builder.add))
    return JSONResponse(builder.response().model_dump())


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: p.ChatCompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    state = app_state(request)
    spec = await state.resolver.resolve(body.model)
    reasoning = reasoning_parser_name(state, spec, convert.thinking_wanted(body))
    generation, parser, images = convert.to_chat_request(body, state.tool_call_parser, reasoning)
    generation.images = await request_images(request, images)
    stream = await serving.start(request, spec, [generation])
    parser_name = state.tool_call_parser if parser else None
    builder = ChatBuilder(body, generation.request_id, parser_name, reasoning)
    if body.stream:
        return _event_stream(stream, builder.chunks, builder.usage_chunk, body)
    await until_disconnect(request, serving.consume(stream, builder.add))
    return JSONResponse(builder.response().model_dump())


@router.post("/v1/embeddings")
async def create_embeddings(body: p.EmbeddingRequest, request: Request) -> p.EmbeddingResponse:
    spec = await app_state(request).resolver.resolve(body.model)
    requests = convert.to_embedding_requests(body)
    vectors: dict[int, list[float]] = {}
    totals = convert.Totals()

    def add(index: int, delta: Delta) -> None:
        if delta.output.embedding is not None:
            vectors[index] = delta.output.embedding
        totals.add(delta.output.usage, 0)

    stream = await serving.start(request, spec, requests)
    await until_disconnect(request, serving.consume(stream, add))
    data = [
        p.Embedding(index=i, embedding=convert.embedding_data(v, body.encoding_format))
        for i, v in sorted(vectors.items())
    ]
    usage = p.EmbeddingUsage(prompt_tokens=totals.prompt_tokens, total_tokens=totals.prompt_tokens)
    return p.EmbeddingResponse(data=data, model=body.model, usage=usage)


@router.post("/tokenize")
async def tokenize(body: p.TokenizeRequest, request: Request) -> p.TokenizeResponse:
    state = app_state(request)
    check_text(state.limits, body.prompt or "", "prompt")
    if body.messages is not None:
        _limit_messages(state.limits, body.messages)
    spec = await state.resolver.resolve(body.model)
    async with state.manager.acquire(spec) as model:
        if body.messages is not None:
            generation = GenerationRequest(
                request_id="tokenize",
                model=body.model,
                params=SamplingParams(),
                messages=[convert.to_message(m, i) for i, m in enumerate(body.messages)],
                tools=body.tools,
                add_generation_prompt=body.add_generation_prompt,
            )
            serving.apply_model_defaults(generation, spec, state.chat_template(spec))
            text = await asyncio.to_thread(serving.render_prompt, model, generation)
            ids = await model.engine.tokenize(text, False)
        else:
            ids = await model.engine.tokenize(body.prompt or "", body.add_special_tokens)
        return p.TokenizeResponse(count=len(ids), max_model_len=model.max_model_len, tokens=ids)


@router.post("/detokenize")
async def detokenize(body: p.DetokenizeRequest, request: Request) -> p.DetokenizeResponse:
    state = app_state(request)
    async with state.manager.acquire(await state.resolver.resolve(body.model)) as model:
        check_token_ids(body.tokens, model.engine.info.vocab_size, "tokens")
        return p.DetokenizeResponse(prompt=await model.engine.detokenize(body.tokens))


# -- the shared plumbing --------------------------------------------------------------


def _limit_messages(limits: RequestLimits, messages: list[p.ChatMessage]) -> None:
    probe = GenerationRequest(
        request_id="",
        model="",
        params=SamplingParams(),
        messages=[m.model_dump() for m in messages],
    )
    check_requests(limits, [probe])


def _event_stream(
    stream: AsyncIterator[Tagged],
    chunks: EventBuilder,
    usage_chunk: Callable[[], str],
    body: p.SamplingFields,
) -> StreamingResponse:
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    async def events() -> AsyncIterator[bytes]:
        try:
            async for index, delta in stream:
                for chunk in chunks(index, delta):
                    yield sse(chunk)
            if include_usage:
                yield sse(usage_chunk())
        except LlmportError as error:
            yield sse(json.dumps(error_body(error.status, error.message, error.code)))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        yield DONE

    return StreamingResponse(events(), media_type="text/event-stream")


class _CompletionBuilder:
    def __init__(self, body: p.CompletionRequest, request_id: str, prompts: list[str] | None):
        self.body = body
        self.id = request_id
        self.created = int(time.time())
        self.prompts = prompts
        self.choices: dict[int, convert.Choice] = {}
        self.totals = convert.Totals()

    def _index(self, prompt_index: int, delta: Delta) -> int:
        return prompt_index * self.body.n + delta.output.index

    def add(self, prompt_index: int, delta: Delta) -> None:
        out = delta.output
        choice = self.choices.setdefault(self._index(prompt_index, delta), convert.Choice())
        if not choice.text and self.prompts is not None and out.prompt_token_ids is not None:
            choice.text = self.prompts[prompt_index]
        choice.add(out)
        self.totals.add(out.usage, out.index)

    def response(self) -> p.CompletionResponse:
        choices = []
        for index in sorted(self.choices):
            choice = self.choices[index]
            logprobs = None
            if self.body.logprobs is not None:
                logprobs = convert.completion_logprobs(choice.logprobs, 0)
            choices.append(
                p.CompletionChoice(
                    index=index,
                    text=choice.text,
                    logprobs=logprobs,
                    finish_reason=choice.finish_reason,
                )
            )
        return p.CompletionResponse(
            id=self.id, model=self.body.model, choices=choices, usage=self.totals.usage()
        )

    def chunks(self, prompt_index: int, delta: Delta) -> list[str]:
        out = delta.output
        self.totals.add(out.usage, out.index)
        text = out.text
        if self.prompts is not None and out.prompt_token_ids is not None:
            text = self.prompts[prompt_index] + text
        if not text and out.finish_reason is None:
            return []
        logprobs = None
        if self.body.logprobs is not None:
            logprobs = convert.completion_logprobs(out.logprobs or [], 0)
        choice = p.CompletionChoice(
            index=self._index(prompt_index, delta),
            text=text,
            logprobs=logprobs,
            finish_reason=convert.finish_reason(out),
        )
        return [self._chunk([choice]).model_dump_json()]

    def usage_chunk(self) -> str:
        return self._chunk([], self.totals.usage()).model_dump_json()

    def _chunk(self, choices: list[p.CompletionChoice], usage: Any = None) -> p.CompletionResponse:
        return p.CompletionResponse(
            id=self.id, created=self.created, model=self.body.model, choices=choices, usage=usage
        )
