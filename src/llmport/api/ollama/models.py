"""Ollama's model-management routes: tags, ps, show, pull, delete, copy, create, version."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from llmport import __version__
from llmport.api.json_body import JsonRoute
from llmport.api.ollama import protocol as p
from llmport.api.state import app_state
from llmport.errors import InvalidParameter, LlmportError, ModelNotFound
from llmport.models.spec import ModelSpec
from llmport.store.library import Library, details
from llmport.store.modelfile import Modelfile, parse_modelfile
from llmport.store.pull import Progress
from llmport.store.registry import ModelRecord

router = APIRouter(route_class=JsonRoute)
#: The Ollama API version llmport answers as (clients gate features on it).
OLLAMA_API_VERSION = "0.12.0"
NDJSON = "application/x-ndjson"
#: The expiry ps shows for a model kept loaded forever, as Ollama does.
FOREVER = datetime(2318, 11, 25, tzinfo=UTC)


@router.get("/")
async def root() -> PlainTextResponse:
    return PlainTextResponse("llmport is running")


@router.head("/")
async def root_head() -> Response:
    return Response(status_code=200)


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION, "llmport": __version__}


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    resolver = app_state(request).resolver
    records = await asyncio.to_thread(resolver.library.list)
    listed = {record.name for record in records}
    cached = await asyncio.to_thread(resolver.hf_cache_records)  # Pulled safetensors models.
    records += [record for record in cached if record.name not in listed]
    for alias in resolver.aliases:  # --served-model-name: listed by the name it answers to.
        spec = await resolver.resolve(alias)
        records.insert(0, dataclasses.replace(spec.record, name=alias))
    return {"models": [_tag(record) for record in records]}


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    state = app_state(request)
    models = []
    for model in state.manager.loaded():
        record = dataclasses.replace(model.spec.record, name=model.name)
        expires = model.expires_at
        if expires is None:  # In use: the timer starts when the last request ends.
            expires = time.time() + model.keep_alive
        # Ollama shows "forever" as a far date; a keep_alive reaching past it (1e300 s,
        # say: beyond what a datetime holds) shows as the same date.
        far = model.is_forever or expires >= FOREVER.timestamp()
        expires_at = _iso(FOREVER if far else datetime.fromtimestamp(expires, UTC))
        entry: dict[str, Any] = _tag(record)
        info = model.engine.info
        entry.update(
            size=model.memory.total_bytes,
            size_vram=0 if info.device == "cpu" else model.memory.total_bytes,
            expires_at=expires_at,
            context_length=model.max_model_len,
            engine=info.kind,
            device=info.device,
            node=model.node.name,
            state=model.state,
        )
        models.append(entry)
    return {"models": models}


@router.post("/api/show")
async def show(body: p.ModelRequest, request: Request) -> dict[str, Any]:
    spec = await resolve(request, body.target)
    record = spec.record
    meta = record.metadata
    arch = str(meta.get("architecture", ""))
    template = record.template or meta.get("chat_template") or ""
    return {
        "license": "\n".join(record.license),
        "modelfile": _modelfile(record).render(),
        "parameters": "\n".join(f"{k} {_value(v)}" for k, v in record.parameters.items()),
        "template": template,
        "system": record.system or "",
        "details": details(record),
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": meta.get("num_params", 0),
            f"{arch}.context_length": meta.get("context_length", 0),
            f"{arch}.embedding_length": meta.get("embedding_length", 0),
        },
        "capabilities": spec.capabilities,
        "modified_at": _iso(datetime.fromtimestamp(record.modified or 0, UTC)),
    }


@router.post("/api/pull", response_model=None)
async def pull(body: p.ModelRequest, request: Request) -> JSONResponse | StreamingResponse:
    library = app_state(request).library
    if not body.stream:
        await _in_own_thread(lambda: library.pull(body.target))
        return JSONResponse({"status": "success"})
    return StreamingResponse(_pull_lines(library, body.target), media_type=NDJSON)


@router.delete("/api/delete")
async def delete(body: p.ModelRequest, request: Request) -> Response:
    state = app_state(request)
    cached = await _hf_cache_key(request, body.target)
    for model in state.manager.loaded():
        if model.name == body.target or (cached is not None and model.key == cached):
            await state.manager.unload(model.spec)
    try:
        await asyncio.to_thread(state.library.delete, body.target)
    except ModelNotFound:
        raise ModelNotFound(f"model '{body.target}' not found", param="model") from None
    return Response(status_code=200)


@router.post("/api/copy")
async def copy(body: p.CopyRequest, request: Request) -> Response:
    spec = await resolve(request, body.source)
    library = app_state(request).library
    await asyncio.to_thread(library.put, dataclasses.replace(spec.record), body.destination)
    return Response(status_code=200)


@router.post("/api/create", response_model=None)
async def create(body: p.CreateRequest, request: Request) -> JSONResponse | StreamingResponse:
    name = body.model or body.name
    if not name:
        raise InvalidParameter("model (the new name) is required", param="model")
    modelfile = _create_modelfile(body)
    base = await resolve(request, modelfile.from_)  # FROM any name the server answers to.
    library = app_state(request).library
    await asyncio.to_thread(library.create, name, modelfile, dataclasses.replace(base.record))
    if not body.stream:
        return JSONResponse({"status": "success"})
    statuses = ["using existing layer", "writing manifest", "success"]
    lines = (json.dumps({"status": status}).encode() + b"\n" for status in statuses)
    return StreamingResponse(iter(lines), media_type=NDJSON)


# -- helpers ----------------------------------------------------------------------------


def _tag(record: ModelRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "model": record.name,
        "modified_at": _iso(datetime.fromtimestamp(record.modified or 0, UTC)),
        "size": record.size,
        "digest": record.digest,
        "details": details(record),
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


async def resolve(request: Request, name: str) -> ModelSpec:
    """The spec for ``name`` from the one resolver, or Ollama's 404: ``model 'x' not found``."""
    try:
        return await app_state(request).resolver.resolve(name)
    except ModelNotFound:
        raise ModelNotFound(f"model '{name}' not found", param="model") from None


async def _hf_cache_key(request: Request, name: str) -> str | None:
    """The loaded-model key (its snapshot) of the Hugging Face cache model ``name`` names,
    so ``org/name`` unloads what ``hf.co/org/name`` loaded; None for any other name."""
    try:
        spec = await app_state(request).resolver.resolve(name)
    except (LlmportError, OSError):  # Not a model here: delete answers for it.
        return None
    return spec.key if spec.source == "hf_cache" else None


def _modelfile(record: ModelRecord) -> Modelfile:
    parameters: dict[str, int | float | list[str]] = {}
    for key, value in record.parameters.items():
        if isinstance(value, int | float) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            parameters[key] = value
    return Modelfile(
        from_=record.files[0].path,
        parameters=parameters,
        template=record.template,
        system=record.system,
        license=list(record.license),
        messages=list(record.messages),
    )


def _create_modelfile(body: p.CreateRequest) -> Modelfile:
    """The new model's settings: structured fields (new clients) or Modelfile text (old)."""
    if body.files or body.quantize:
        raise InvalidParameter("create from uploaded files or with quantize is not supported")
    if body.modelfile:
        return parse_modelfile(body.modelfile)
    if not body.from_:
        raise InvalidParameter("from (the base model) is required", param="from")
    text = f"FROM {body.from_}\n"
    for key, value in (body.parameters or {}).items():
        for item in value if isinstance(value, list) else [value]:
            text += f"PARAMETER {key} {json.dumps(item) if isinstance(item, str) else item}\n"
    parsed = parse_modelfile(text)
    licenses = [body.license] if isinstance(body.license, str) else list(body.license or [])
    return Modelfile(
        from_=parsed.from_,
        parameters=parsed.parameters,
        template=body.template,
        system=body.system,
        license=licenses,
        messages=[(m.role, m.content) for m in body.messages or []],
    )


def _in_own_thread(work: Callable[[], object]) -> asyncio.Future[object]:
    """Run a pull (minutes) on a thread of its own: on the shared default executor a few
    pulls would starve the short jobs (template rendering, lookups) every request needs."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def run() -> None:
        try:
            result = work()
        except BaseException as error:
            loop.call_soon_threadsafe(_settle, future, None, error)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="llmport-pull", daemon=True).start()
    return future


def _settle(future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _pull_lines(library: Library, name: str) -> AsyncIterator[bytes]:
    """Pull in a thread; its progress becomes NDJSON lines as Ollama streams them."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Progress | LlmportError | None] = asyncio.Queue()

    def report(progress: Progress) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, progress)

    def work() -> None:
        try:
            library.pull(name, report)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except LlmportError as error:
            loop.call_soon_threadsafe(queue.put_nowait, error)

    task = _in_own_thread(work)
    last: dict[str, Any] = {}
    while (item := await queue.get()) is not None:
        if isinstance(item, LlmportError):
            last = {"error": item.message}
            yield json.dumps(last).encode() + b"\n"
            break
        last = {"status": item.status}
        if item.digest is not None:
            last.update(digest=item.digest, total=item.total, completed=item.completed)
        yield json.dumps(last).encode() + b"\n"
    if not last:  # Nothing to fetch (the embedded model): still say so.
        yield json.dumps({"status": "success"}).encode() + b"\n"
    await task
