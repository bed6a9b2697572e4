"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API onto
the shared serving path (one GenerationRequest per body)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmport.api import serving
from llmport.api.answer import answer_parser, reasoning_parser_name, template_kwargs
from llmport.api.anthropic import convert
from llmport.api.anthropic import protocol as p
from llmport.api.anthropic.builder import MessageBuilder, event
from llmport.api.anthropic.errors import anthropic_error_body
from llmport.api.images import request_images
from llmport.api.json_body import JsonRoute
from llmport.api.limits import check_requests
from llmport.api.state import app_state
from llmport.api.streaming import until_disconnect
from llmport.errors import LlmportError
from llmport.types import GenerationRequest, SamplingParams

router = APIRouter(route_class=JsonRoute)


@router.post("/v1/messages", response_model=None)
async def create_message(
    body: p.MessagesRequest, request: Request
) -> JSONResponse | StreamingResponse:
    state = app_state(request)
    spec = await state.resolver.resolve(body.model)
    reasoning = reasoning_parser_name(state, spec, convert.thinking_wanted(body))
    generation, tools, images = convert.to_request(body, state.tool_call_parser, reasoning)
    generation.images = await request_images(request, images)
    stream = await serving.start(request, spec, [generation])
    builder = MessageBuilder(
        generation.request_id,
        body.model,
        generation.params.stop,
        answer_parser(reasoning, tools),
    )
    if body.stream:
        return StreamingResponse(_events(stream, builder), media_type="text/event-stream")
    await until_disconnect(request, serving.consume(stream, builder.add))
    return JSONResponse(builder.message())


async def _events(
    stream: AsyncIterator[serving.Tagged], builder: MessageBuilder
) -> AsyncIterator[bytes]:
    try:
        async for index, delta in stream:
            for item in builder.events(index, delta):
                yield item
    except LlmportError as error:
        yield event("error", {"error": anthropic_error_body(error.status, error.message)["error"]})
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: p.CountTokensRequest, request: Request) -> dict[str, int]:
    """The prompt's tokens as the model's template renders it (the model is loaded)."""
    state = app_state(request)
    generation = GenerationRequest(
        request_id="count_tokens",
        model=body.model,
        params=SamplingParams(),
        messages=convert.to_messages(body),
        tools=convert.to_tools(body.tools),
        chat_template_kwargs=template_kwargs(convert.thinking_wanted(body)),
    )
    check_requests(state.limits, [generation])
    spec = await state.resolver.resolve(body.model)
    serving.apply_model_defaults(generation, spec, state.chat_template(spec))
    async with state.manager.acquire(spec) as model:
        text = await asyncio.to_thread(serving.render_prompt, model, generation)
        return {"input_tokens": len(await model.engine.tokenize(text, False))}
