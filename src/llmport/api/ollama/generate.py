"""``/api/generate``, ``/api/chat``, ``/api/embed`` and ``/api/embeddings``: Ollama's
generation routes, onto the same serving path as the OpenAI routes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmport.api import serving
from llmport.api.answer import (
    Answer,
    AnswerParser,
    answer_parser,
    reasoning_first,
    reasoning_parser_name,
    template_kwargs,
)
from llmport.api.images import IMAGE_COUNT, ImageRef, request_images
from llmport.api.json_body import JsonRoute
from llmport.api.ollama import convert
from llmport.api.ollama import protocol as p
from llmport.api.ollama.models import resolve
from llmport.api.serving import Delta
from llmport.api.state import app_state
from llmport.api.streaming import until_disconnect
from llmport.chat.templates import is_jinja, render_go_prompt
from llmport.chat.tools import ToolCall, ToolParser, tool_parser
from llmport.errors import InvalidParameter, LlmportError, UnsupportedOption
from llmport.manager.keep_alive import parse_keep_alive
from llmport.models.spec import ModelSpec
from llmport.types import GenerationRequest, Output, SamplingParams

router = APIRouter(route_class=JsonRoute)
NDJSON = "application/x-ndjson"
#: What ``think`` may name besides true and false (gpt-oss's efforts).
_EFFORTS = ("low", "medium", "high")


@router.post("/api/generate", response_model=None)
async def generate(body: p.GenerateRequest, request: Request) -> JSONResponse | StreamingResponse:
    if body.suffix:
        raise UnsupportedOption("suffix (fill-in-the-middle) is not supported", param="suffix")
    spec = await resolve(request, body.model)
    if not body.prompt:
        return await _load_or_unload(request, spec, body.keep_alive, "response")
    generation = GenerationRequest(
        request_id=f"gen-{uuid.uuid4().hex}",
        model=body.model,
        keep_alive=parse_keep_alive(body.keep_alive),
        is_chat=False,  # It renders its own prompt from SYSTEM and the template below.
        **_params(spec, body.options, body.format),
    )
    refs = [ImageRef(image, f"images[{i}]") for i, image in enumerate(body.images or [])]
    generation.images = await request_images(request, refs)
    system = body.system if body.system is not None else (spec.system or "")
    if body.raw:
        generation.prompt = body.prompt
    elif body.template or (spec.template and not is_jinja(spec.template)):
        template = body.template or spec.template or ""
        generation.prompt = render_go_prompt(template, system=system, prompt=body.prompt)
    elif spec.template or spec.chat_template:
        messages = [{"role": "system", "content": system}] if system else []
        user = {"role": "user", "content": body.prompt, IMAGE_COUNT: len(refs)}
        generation.messages = [*messages, user]
    else:  # A base model without a chat template: the prompt is the text to continue.
        generation.prompt = f"{system}\n\n{body.prompt}" if system else body.prompt
    context = list(body.context or [])
    parser = _thinking(request, spec, generation, body.think) if generation.messages else None
    return await _respond(request, spec, generation, "response", body.stream, context, parser)


@router.post("/api/chat", response_model=None)
async def chat(body: p.ChatRequest, request: Request) -> JSONResponse | StreamingResponse:
    spec = await resolve(request, body.model)
    if not body.messages:
        return await _load_or_unload(request, spec, body.keep_alive, "message")
    refs: list[ImageRef] = []
    generation = GenerationRequest(
        request_id=f"chat-{uuid.uuid4().hex}",
        model=body.model,
        messages=[_message(m, i, refs) for i, m in enumerate(body.messages)],
        tools=body.tools,
        keep_alive=parse_keep_alive(body.keep_alive),
        **_params(spec, body.options, body.format),
    )
    generation.images = await request_images(request, refs)
    tools = tool_parser(app_state(request).tool_call_parser) if body.tools else None
    parser = _thinking(request, spec, generation, body.think, tools)
    return await _respond(request, spec, generation, "message", body.stream, None, parser)


def _message(message: p.Message, index: int, refs: list[ImageRef]) -> dict[str, Any]:
    """A template-ready message; its ``images`` (base64) go to ``refs``, counted in it."""
    out = message.model_dump(exclude_none=True)
    images = out.pop("images", None) or []
    refs += [ImageRef(image, f"messages[{index}].images[{i}]") for i, image in enumerate(images)]
    if images:
        out[IMAGE_COUNT] = len(images)
    return out


@router.post("/api/embed")
async def embed(body: p.EmbedRequest, request: Request) -> dict[str, Any]:
    if body.dimensions is not None:
        raise UnsupportedOption("dimensions: the model's full embedding is returned")
    inputs = [body.input] if isinstance(body.input, str) else body.input
    started = time.monotonic()
    vectors, num_tokens, load = await _embed_all(request, body.model, inputs, body.keep_alive)
    return {
        "model": body.model,
        "embeddings": vectors,
        "total_duration": convert.ns(time.monotonic() - started),
        "load_duration": convert.ns(load),
        "prompt_eval_count": num_tokens,
    }


@router.post("/api/embeddings")
async def embeddings(body: p.EmbeddingsRequest, request: Request) -> dict[str, Any]:
    vectors, _, _ = await _embed_all(request, body.model, [body.prompt], body.keep_alive)
    return {"embedding": vectors[0]}


# -- plumbing ---------------------------------------------------------------------------


def _params(
    spec: ModelSpec, options: dict[str, Any] | None, format_: str | dict[str, Any] | None
) -> dict[str, Any]:
    """``params`` and ``params_set`` of the GenerationRequest: the request's options over
    Ollama's defaults (the Modelfile's fill the gap later), checked against the context."""
    convert.check_num_ctx(options, spec.trained_context or 1 << 30)
    params, explicit = convert.to_sampling_params(options)
    params.grammar = convert.format_grammar(format_)
    return {"params": params, "params_set": explicit}


def _thinking(
    request: Request,
    spec: ModelSpec,
    generation: GenerationRequest,
    think: bool | str | None,
    tools: ToolParser | None = None,
) -> AnswerParser | None:
    """Ollama's ``think``: true/false, or an effort (low, medium, high) for templates that
    take ``reasoning_effort``; the model's thinking is returned apart when it reasons."""
    if isinstance(think, str) and think not in _EFFORTS:
        raise InvalidParameter(
            f"think must be true, false or one of {', '.join(_EFFORTS)}, not {think!r}",
            param="think",
        )
    wanted = None if think is None else think is not False
    effort = think if isinstance(think, str) else None
    generation.chat_template_kwargs = template_kwargs(wanted, effort)
    reasoning = reasoning_parser_name(app_state(request), spec, wanted)
    generation.params.grammar = reasoning_first(generation.params.grammar, reasoning)
    if reasoning is None and tools is None:
        return None
    return answer_parser(reasoning, tools)


async def _load_or_unload(
    request: Request, spec: ModelSpec, keep_alive: p.KeepAlive, kind: str
) -> JSONResponse:
    """Ollama's empty request: load the model, or with keep_alive 0 unload it."""
    manager = app_state(request).manager
    seconds = parse_keep_alive(keep_alive)
    if seconds == 0:
        await manager.unload(spec)
        reason = "unload"
    else:
        await manager.preload(spec, seconds)
        reason = "load"
    body: dict[str, Any] = {"model": spec.name, "created_at": convert.now_iso()}
    body[kind] = "" if kind == "response" else {"role": "assistant", "content": ""}
    return JSONResponse({**body, "done": True, "done_reason": reason})


async def _respond(
    request: Request,
    spec: ModelSpec,
    generation: GenerationRequest,
    kind: str,
    stream: bool,
    context: list[int] | None,
    parser: AnswerParser | None = None,
) -> JSONResponse | StreamingResponse:
    started = time.monotonic()
    deltas = await serving.start(request, spec, [generation])
    final = _Final(spec.name, kind, started, context)
    if not stream:
        await until_disconnect(request, serving.consume(deltas, final.add))
        if parser is None:
            return JSONResponse(final.object(final.text))
        return JSONResponse(final.object_with_calls(parser.parse(final.text)))
    return StreamingResponse(_lines(deltas, final, parser), media_type=NDJSON)


async def _lines(
    deltas: AsyncIterator[serving.Tagged], final: _Final, parser: AnswerParser | None
) -> AsyncIterator[bytes]:
    try:
        async for index, delta in deltas:
            final.add(index, delta)
            if parser is None:
                if delta.output.text:
                    yield _line(final.chunk(delta.output.text))
                continue
            piece = parser.feed(delta.output.text)
            if piece.content or piece.reasoning:
                yield _line(final.chunk(piece.content, thinking=piece.reasoning))
        if parser is None:
            yield _line(final.object(""))
        else:
            rest = parser.finish()
            if rest.calls:  # Ollama sends the calls in a chunk of their own.
                yield _line(final.chunk(rest.content, _ollama_calls(rest.calls), rest.reasoning))
                rest.content = rest.reasoning = ""
            yield _line(final.object(rest.content, rest.reasoning))
    except LlmportError as error:
        yield _line({"error": error.message})
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode() + b"\n"


class _Final:
    """Accumulates one answer; builds Ollama's chunks and its closing object."""

    def __init__(self, name: str, kind: str, started: float, context: list[int] | None) -> None:
        self.name, self.kind, self.started = name, kind, started
        self.context = context
        self.text = ""
        self.last: Output | None = None
        self.load_seconds = 0.0
        self.token_ids: list[int] = []

    def add(self, _: int, delta: Delta) -> None:
        out = delta.output
        if out.prompt_token_ids is not None:
            self.token_ids = list(out.prompt_token_ids)
            if delta.model.loaded_at >= self.started:
                self.load_seconds = delta.model.load_seconds
        self.token_ids += out.token_ids
        self.text += out.text
        self.last = out

    def chunk(
        self, text: str, calls: list[dict[str, Any]] | None = None, thinking: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.name, "created_at": convert.now_iso()}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        body[self.kind] = text if self.kind == "response" else message
        if thinking and self.kind == "response":
            body["thinking"] = thinking
        body["done"] = False
        return body

    def object_with_calls(self, answer: Answer) -> dict[str, Any]:
        body = self.object(answer.content, answer.reasoning)
        if answer.calls and self.kind == "message":
            body["message"]["tool_calls"] = _ollama_calls(answer.calls)
        return body

    def object(self, text: str, thinking: str = "") -> dict[str, Any]:
        assert self.last is not None  # serving.start yields at least one delta.
        body = self.chunk(text, thinking=thinking)
        elapsed = time.monotonic() - self.started
        body.update(convert.final_fields(self.last, elapsed, self.load_seconds))
        if self.context is not None:
            body["context"] = self.context + self.token_ids
        return body


def _ollama_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Ollama's shape: arguments as an object, no ids."""
    return [{"function": {"name": c.name, "arguments": json.loads(c.arguments)}} for c in calls]


async def _embed_all(
    request: Request, name: str, inputs: list[str], keep_alive: p.KeepAlive
) -> tuple[list[list[float]], int, float]:
    """(vectors in input order, prompt tokens, seconds spent loading the model)."""
    if not inputs or not all(isinstance(text, str) and text for text in inputs):
        raise InvalidParameter("input must be a non-empty string or list of strings", param="input")
    spec = await resolve(request, name)
    seconds = parse_keep_alive(keep_alive)
    base = uuid.uuid4().hex
    requests = [
        GenerationRequest(
            request_id=f"embed-{base}-{i}",
            model=name,
            params=SamplingParams(),
            prompt=text,
            keep_alive=seconds,
            embed=True,
        )
        for i, text in enumerate(inputs)
    ]
    started = time.monotonic()
    vectors: dict[int, list[float]] = {}
    counts = {"tokens": 0, "load": 0.0}

    def add(index: int, delta: Delta) -> None:
        vectors[index] = delta.output.embedding or []
        counts["tokens"] += delta.output.usage.prompt_tokens if delta.output.usage else 0
        if delta.model.loaded_at >= started:
            counts["load"] = delta.model.load_seconds

    await until_disconnect(
        request, serving.consume(await serving.start(request, spec, requests), add)
    )
    return [vectors[i] for i in range(len(inputs))], int(counts["tokens"]), counts["load"]
