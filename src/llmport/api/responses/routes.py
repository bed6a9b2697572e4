"""``/v1/responses``: OpenAI's Responses API onto the shared serving path. With ``store``
(the default) an answer is kept in the registry with its conversation, so a later request
continues it by ``previous_response_id``; ``GET`` and ``DELETE`` by id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmport.api import serving
from llmport.api.answer import answer_parser, reasoning_parser_name
from llmport.api.errors import error_body
from llmport.api.json_body import JsonRoute
from llmport.api.responses import convert
from llmport.api.responses import protocol as p
from llmport.api.responses.builder import ResponseBuilder, as_input
from llmport.api.state import app_state
from llmport.api.streaming import until_disconnect
from llmport.errors import LlmportError, ResponseNotFound
from llmport.store.registry import Registry

router = APIRouter(route_class=JsonRoute)


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: p.ResponsesRequest, request: Request
) -> JSONResponse | StreamingResponse:
    state = app_state(request)
    registry = state.library.registry
    history: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        previous = await _stored(registry, body.previous_response_id, "previous_response_id")
        history = previous["conversation"]
    spec = await state.resolver.resolve(body.model)
    think = None if body.reasoning is None else body.reasoning.effort != "none"
    reasoning = reasoning_parser_name(state, spec, think)
    generation, tools = convert.to_request(body, history, state.tool_call_parser, reasoning)
    stream = await serving.start(request, spec, [generation])
    builder = ResponseBuilder(generation.request_id, body, answer_parser(reasoning, tools))
    asked = history + convert.to_messages(body.input)

    async def keep(response: dict[str, Any]) -> None:
        if body.store:
            conversation = asked + convert.to_messages(as_input(response["output"]))
            record = {"response": response, "conversation": conversation}
            await asyncio.to_thread(registry.put_response, response["id"], record)

    if body.stream:
        return StreamingResponse(_events(stream, builder, keep), media_type="text/event-stream")
    await until_disconnect(request, serving.consume(stream, builder.add))
    response = builder.response()
    await keep(response)
    return JSONResponse(response)


async def _events(
    stream: AsyncIterator[serving.Tagged],
    builder: ResponseBuilder,
    keep: Callable[[dict[str, Any]], Any],
) -> AsyncIterator[bytes]:
    try:
        async for index, delta in stream:
            for item in builder.events(index, delta):
                yield item
        await keep(builder.streamed_response())
    except LlmportError as error:
        body = error_body(error.status, error.message, error.code, error.param)["error"]
        data = json.dumps({"type": "error", "sequence_number": builder.sequence_number, **body})
        yield f"event: error\ndata: {data}\n\n".encode()
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


@router.get("/v1/responses/{response_id}")
async def retrieve_response(response_id: str, request: Request) -> dict[str, Any]:
    stored = await _stored(app_state(request).library.registry, response_id)
    response: dict[str, Any] = stored["response"]
    return response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    registry = app_state(request).library.registry
    if not await asyncio.to_thread(registry.delete_response, response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


async def _stored(registry: Registry, response_id: str, param: str | None = None) -> dict[str, Any]:
    found = await asyncio.to_thread(registry.get_response, response_id)
    if found is None:
        raise _not_found(response_id, param)
    return found


def _not_found(response_id: str, param: str | None = None) -> ResponseNotFound:
    return ResponseNotFound(
        f"no stored response with id {response_id!r} (it was not stored, or was deleted)",
        param=param,
    )
