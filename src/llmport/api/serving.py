"""The one generation path every API dialect shares. A dialect resolves the model (one
resolver), converts its body into GenerationRequests and calls ``start``; from there
it is the same for all: check the limits, apply the model's Modelfile defaults, lease
the model, render chat messages with its template, stream the deltas, record metrics.
It knows nothing of any protocol's JSON."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from starlette.requests import Request as HttpRequest

from llmport.api.images import marks, placed, refuse_images, with_placeholders
from llmport.api.limits import check_requests
from llmport.api.metrics import Metrics
from llmport.api.state import app_state
from llmport.api.streaming import merge, until_disconnect
from llmport.chat.templates import render_chat, template_source
from llmport.errors import LlmportError
from llmport.manager.loaded import LoadedModel
from llmport.manager.manager import ModelManager
from llmport.models.parameters import sampling_fields
from llmport.models.spec import ModelSpec
from llmport.types import GenerationRequest, Output, Request, check_token_ids

#: Status for a request whose client left before the answer was complete (nginx's 499).
CLIENT_CLOSED = 499


class Delta(NamedTuple):
    """An engine delta with the model that produced it (the first one carries the lease)."""

    model: LoadedModel
    output: Output


def engine_request(model: LoadedModel, req: GenerationRequest) -> Request:
    """Validated here too, so a bad parameter never costs a trip to the worker."""
    info = model.engine.info
    req.params.validate(info.vocab_size)
    check_token_ids(req.prompt_token_ids or [], info.vocab_size, "prompt")
    if not info.takes_images:
        refuse_images(req.images, req.model, info.kind)
    if req.messages is None:
        prompt = req.prompt
        if req.images and prompt is not None:  # Ollama's generate: the images lead.
            prompt = with_placeholders(prompt, marks(info.image_placeholder, len(req.images)))
        return Request(
            request_id=req.request_id,
            prompt=prompt,
            prompt_token_ids=req.prompt_token_ids,
            params=req.params,
            embed=req.embed,
            images=req.images,
        )
    return Request(
        request_id=req.request_id,
        prompt=render_prompt(model, req),
        params=req.params,
        add_special_tokens=False,
        images=req.images,
    )


def apply_model_defaults(
    req: GenerationRequest, spec: ModelSpec, chat_template: str | None
) -> None:
    """The model's Modelfile, applied once for every dialect: its PARAMETERs fill what the
    client left unset; in a chat its SYSTEM leads when the client sent none and its
    MESSAGEs come first; ``chat_template`` (``--chat-template`` or a Jinja2 TEMPLATE)
    overrides the model's own."""
    for name, value in sampling_fields(spec.parameters).items():
        if name not in req.params_set:
            setattr(req.params, name, value)
    req.chat_template = chat_template
    if req.messages is None or not req.is_chat:
        return
    preset = [{"role": role, "content": content} for role, content in spec.messages]
    messages = [*preset, *req.messages]
    if spec.system and not any(m.get("role") in ("system", "developer") for m in messages):
        messages.insert(0, {"role": "system", "content": spec.system})
    req.messages = messages


def render_prompt(model: LoadedModel, req: GenerationRequest) -> str:
    """The chat template, most specific first: the request's (a Modelfile TEMPLATE or
    ``--chat-template``), the GGUF's ``tool_use`` variant when tools are offered, the
    GGUF's own, then the architecture's fallback."""
    spec = model.spec
    tool_use = spec.tool_use_template if req.tools else None
    own = req.chat_template or tool_use
    return render_chat(
        template_source(own or spec.chat_template, spec.architecture),
        placed(req.messages or [], model.engine.info.image_placeholder),
        bos_token=model.engine.info.bos_token,
        eos_token=model.engine.info.eos_token,
        add_generation_prompt=req.add_generation_prompt,
        tools=req.tools,
        extra=req.chat_template_kwargs,
    )


async def generate(
    manager: ModelManager, metrics: Metrics, spec: ModelSpec, req: GenerationRequest
) -> AsyncIterator[Delta]:
    """Stream ``req``'s deltas; errors before the first delta are the request's status."""
    started = time.monotonic()
    status = 200
    try:
        async with manager.acquire(spec, req.keep_alive) as model:
            last = None
            # Rendering a template runs in a thread: a slow one never stalls other streams.
            request = await asyncio.to_thread(engine_request, model, req)
            async for output in model.engine.generate(request):
                now = time.monotonic()
                metrics.observe_delta(req.model, output, now - (last or started), last is None)
                last = now
                yield Delta(model, output)
        metrics.observe_finished(req.model, time.monotonic() - started)
    except LlmportError as error:
        status = error.status
        raise
    except (asyncio.CancelledError, GeneratorExit):
        status = CLIENT_CLOSED
        raise
    finally:
        metrics.count_request(req.model, status)


Tagged = tuple[int, Delta]


async def start(
    request: HttpRequest, spec: ModelSpec, requests: list[GenerationRequest]
) -> AsyncIterator[Tagged]:
    """Start generating ``requests`` (one body's, all for ``spec``); returns once the first
    delta is in (or raises the refusal), so a refused request answers with its own status
    code. Items are (request index, delta)."""
    state = app_state(request)
    check_requests(state.limits, requests)
    template = state.chat_template(spec)
    for req in requests:
        apply_model_defaults(req, spec, template)
    stream = merge([generate(state.manager, state.metrics, spec, r) for r in requests])
    first = await until_disconnect(request, anext(stream))
    return _prepend(first, stream)


async def _prepend(first: Tagged, rest: AsyncIterator[Tagged]) -> AsyncIterator[Tagged]:
    yield first
    async for item in rest:
        yield item


async def consume(stream: AsyncIterator[Tagged], add: Callable[[int, Delta], None]) -> None:
    async for index, delta in stream:
        add(index, delta)
