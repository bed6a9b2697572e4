"""PipeEngineClient: the EngineClient of an engine in a worker process, over its pipe.

``generate`` yields a request's Output deltas as the worker streams them;
cancelling the iterator (a client disconnect) aborts the request in the
worker within one step. If the worker dies, every live iterator ends with
WorkerCrashed naming the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection

from pydantic import BaseModel

from llmport.engine.protocol import EngineInfo, EngineStats
from llmport.engine.registry import LoadTarget
from llmport.errors import (
    EngineDead,
    InvalidParameter,
    LlmportError,
    ModelLoadFailed,
    WorkerCrashed,
    error_from_code,
)
from llmport.runtime.handle import ProcessHandle, WorkerHandle
from llmport.runtime.messages import (
    AbortRequest,
    AddRequest,
    Detokenize,
    FromWorker,
    GetStats,
    Load,
    LoadFailed,
    Outputs,
    Ready,
    Reply,
    RequestFailed,
    ResetPrefixCache,
    Shutdown,
    Sleep,
    Tokenize,
    ToWorker,
    WakeUp,
    encoder,
    from_worker_decoder,
)
from llmport.runtime.pipe import AsyncPipe, PipeClosed
from llmport.runtime.worker import run_worker
from llmport.types import Output, Request

logger = logging.getLogger(__name__)

_Item = Output | LlmportError


class WorkerProcess:
    """A spawned worker with llama.cpp imported, waiting for a model to load.

    Spawning costs an interpreter start and the imports (about a second); a server
    keeps one spare so a model swap pays only the load.
    """

    def __init__(self, warm_up: bool = True) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=run_worker,
            args=(child, logging.getLogger().getEffectiveLevel(), warm_up),
            name="llmport-worker",
            daemon=True,
        )
        self._process.start()
        child.close()

    @property
    def is_alive(self) -> bool:
        return self._process.is_alive()

    async def load(self, kind: str, target: LoadTarget, config: BaseModel) -> PipeEngineClient:
        """Load the model in this process and hand it over; raise why it failed."""
        return await load_over(self._conn, ProcessHandle(self._process), kind, target, config)

    def close(self) -> None:
        """Let an unused spare exit (it sees EOF)."""
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()


async def load_over(
    conn: Connection, handle: WorkerHandle, kind: str, target: LoadTarget, config: BaseModel
) -> PipeEngineClient:
    """Send ``Load`` over ``conn`` to a waiting worker and wait for it to be ready; raise
    why it failed (the worker's own error, or how it died)."""
    load = Load(kind=kind, target=target, config=config.model_dump(mode="json"))
    # A worker dead before the load is reported below as a load failure.
    with contextlib.suppress(OSError):
        conn.send_bytes(encoder.encode(load))
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, _first_message, conn)
    if isinstance(first, Ready):
        return PipeEngineClient(handle, conn, first.info)
    await loop.run_in_executor(None, handle.join, 5)
    conn.close()
    if isinstance(first, LoadFailed):
        raise error_from_code(first.code, first.message)
    raise ModelLoadFailed(f"worker for {target.weight_files[0]} {_where(handle)}{handle.death()} "
                          "while loading")  # fmt: skip


class PipeEngineClient:
    """Talks to one worker over a pipe (an EngineClient). Use from one asyncio event loop."""

    def __init__(self, handle: WorkerHandle, conn: Connection, info: EngineInfo) -> None:
        self._handle = handle
        self.info = info
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._dead: LlmportError | None = None
        self._is_closing = False
        self._calls: dict[int, asyncio.Future[Reply]] = {}
        self._call_ids = itertools.count()
        self._pipe = AsyncPipe(conn, self._on_message, self._on_worker_death)

    @property
    def pid(self) -> int | None:
        return self._handle.pid

    @property
    def is_alive(self) -> bool:
        return self._dead is None and self._handle.is_alive()

    @property
    def num_requests(self) -> int:
        return len(self._queues)

    async def generate(self, request: Request) -> AsyncIterator[Output]:
        """Stream the request's deltas; raises the worker's error for a bad request."""
        if self._dead is not None:
            raise self._dead
        request_id = request.request_id or uuid.uuid4().hex
        if request_id in self._queues:
            raise error_from_code("invalid_parameter", f"request id {request_id!r} is in use")
        request.request_id = request_id
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._queues[request_id] = queue
        finished = False
        try:
            self._send(AddRequest(request))
            num_open = request.params.n
            while num_open:
                item = await queue.get()
                if isinstance(item, LlmportError):
                    finished = True
                    raise item
                num_open -= item.finished
                yield item
            finished = True
        finally:
            self._queues.pop(request_id, None)
            if not finished and self._dead is None:
                self._send(AbortRequest(request_id))

    async def abort(self, request_id: str) -> None:
        if self._dead is None:
            self._send(AbortRequest(request_id))

    async def stats(self) -> EngineStats:
        """The worker's load, answered between two steps."""
        reply = await self._call(lambda call_id: GetStats(call_id))
        assert reply.stats is not None  # The worker's contract, not user input.
        return reply.stats

    async def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        reply = await self._call(lambda call_id: Tokenize(call_id, text, add_special_tokens))
        return reply.token_ids or []

    async def detokenize(self, token_ids: list[int]) -> str:
        reply = await self._call(lambda call_id: Detokenize(call_id, token_ids))
        if reply.error is not None:
            raise InvalidParameter(reply.error, param="tokens")
        return reply.text or ""

    async def _call(self, make: Callable[[int], ToWorker]) -> Reply:
        """Send a query and wait for its Reply (answered between two steps)."""
        if self._dead is not None:
            raise self._dead
        call_id = next(self._call_ids)
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = waiter
        try:
            self._send(make(call_id))
            return await waiter
        finally:
            self._calls.pop(call_id, None)

    async def reset_prefix_cache(self) -> None:
        self._send(ResetPrefixCache())

    async def sleep(self, level: int) -> None:
        reply = await self._call(lambda call_id: Sleep(call_id, level))
        if reply.error is not None:
            raise ModelLoadFailed(reply.error)

    async def wake_up(self) -> None:
        reply = await self._call(lambda call_id: WakeUp(call_id))
        if reply.error is not None:
            raise ModelLoadFailed(reply.error)

    async def close(self) -> None:
        """Stop the worker: politely, then by force."""
        loop = asyncio.get_running_loop()
        self._is_closing = True  # The pipe's end that follows is no crash.
        if self._dead is None and self._handle.is_alive() and not self._pipe.is_closed:
            self._send(Shutdown())
            await loop.run_in_executor(None, self._handle.join, 10)
        if self._handle.is_alive():
            self._handle.kill()
            await loop.run_in_executor(None, self._handle.join, 5)
        self._pipe.close()
        self._fail_all(EngineDead("the engine was closed"))

    # -- plumbing ------------------------------------------------------------------

    def _send(self, message: ToWorker) -> None:
        """Queue ``message`` for the worker; a full pipe waits, only a closed one fails."""
        try:
            self._pipe.send(encoder.encode(message))
        except PipeClosed:
            raise self._dead or EngineDead("the worker's pipe is closed") from None

    def _on_message(self, data: bytes) -> None:
        self._dispatch(from_worker_decoder.decode(data))

    def _dispatch(self, message: FromWorker) -> None:
        if isinstance(message, Outputs):
            for output in message.outputs:
                queue = self._queues.get(output.request_id)
                if queue is not None:
                    queue.put_nowait(output)
        elif isinstance(message, Reply):
            waiter = self._calls.get(message.call_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        elif isinstance(message, RequestFailed):
            queue = self._queues.get(message.request_id)
            if queue is not None:
                queue.put_nowait(error_from_code(message.code, message.message, message.param))

    def _on_worker_death(self) -> None:
        """The channel ended (end of file or a broken connection): the worker is gone."""
        if self._is_closing:
            self._dead = EngineDead("the engine was closed")
            return
        self._handle.join(1)
        self.lost(f"the model's worker {_where(self._handle)}{self._handle.death()}")

    def lost(self, reason: str) -> None:
        """The worker is gone or cannot be reached (its node died or hangs): fail every
        request with ``reason`` and never talk to it again."""
        if self._dead is not None or self._is_closing:
            return
        self._dead = WorkerCrashed(reason)
        logger.error("%s", reason)
        self._pipe.close()
        self._handle.lost()
        self._fail_all(self._dead)

    def fail_requests(self, error: LlmportError) -> None:
        """End every request in flight with ``error`` and abort them in the worker."""
        request_ids = list(self._queues)
        self._fail_all(error)
        if self._dead is None:
            for request_id in request_ids:
                self._send(AbortRequest(request_id))

    def _fail_all(self, error: LlmportError) -> None:
        for queue in self._queues.values():
            queue.put_nowait(error)
        for waiter in self._calls.values():
            if not waiter.done():
                waiter.set_exception(error)


def _first_message(conn: Connection) -> FromWorker | None:
    try:
        message: FromWorker = from_worker_decoder.decode(conn.recv_bytes())
    except (EOFError, OSError):
        return None
    return message


def _where(handle: WorkerHandle) -> str:
    return "process " if handle.node == "local" else f"on node {handle.node} "
