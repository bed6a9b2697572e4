"""EngineClient: the calling process's handle on one worker process.

``generate`` yields a request's Output deltas as the worker streams them;
cancelling the iterator (a client disconnect) aborts the request in the
worker within one step. If the worker dies, every live iterator ends with
WorkerCrashed naming the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import uuid
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from llmport.config import EngineConfig
from llmport.engine.messages import (
    AbortRequest,
    AddRequest,
    FromWorker,
    GetStats,
    LoadFailed,
    Outputs,
    Ready,
    RequestFailed,
    ResetPrefixCache,
    Shutdown,
    Stats,
    ToWorker,
    encoder,
    from_worker_decoder,
)
from llmport.engine.worker import run_worker
from llmport.errors import EngineDead, LlmportError, ModelLoadFailed, WorkerCrashed, error_from_code
from llmport.types import Output, Request

logger = logging.getLogger(__name__)

_Item = Output | LlmportError


class EngineClient:
    """Talks to one worker over a pipe. Use from a single asyncio event loop."""

    def __init__(self, process: BaseProcess, conn: Connection, ready: Ready) -> None:
        self._process = process
        self._conn = conn
        self.info = ready
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._dead: LlmportError | None = None
        self._stats_waiters: list[asyncio.Future[Stats]] = []
        asyncio.get_running_loop().add_reader(conn.fileno(), self._on_readable)

    @classmethod
    async def start(cls, model_path: Path, config: EngineConfig) -> EngineClient:
        """Spawn a worker and wait until its model is loaded (or raise why not)."""
        parent, child = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=run_worker,
            args=(model_path, config, child, logging.getLogger().getEffectiveLevel()),
            name=f"llmport-worker:{model_path.name}",
            daemon=True,
        )
        process.start()
        child.close()
        first = await asyncio.get_running_loop().run_in_executor(None, _first_message, parent)
        if isinstance(first, Ready):
            return cls(process, parent, first)
        process.join(timeout=5)
        parent.close()
        if isinstance(first, LoadFailed):
            raise error_from_code(first.code, first.message)
        raise ModelLoadFailed(f"worker for {model_path} {_death(process)} while loading")

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def is_alive(self) -> bool:
        return self._dead is None and self._process.is_alive()

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

    async def stats(self) -> Stats:
        """The worker's load, answered between two steps."""
        if self._dead is not None:
            raise self._dead
        waiter: asyncio.Future[Stats] = asyncio.get_running_loop().create_future()
        self._stats_waiters.append(waiter)
        self._send(GetStats())
        return await waiter

    async def reset_prefix_cache(self) -> None:
        self._send(ResetPrefixCache())

    async def close(self) -> None:
        """Stop the worker: politely, then by force."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._conn.fileno())
        if self._process.is_alive():
            with contextlib.suppress(EngineDead):
                self._send(Shutdown())
            await loop.run_in_executor(None, self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
            await loop.run_in_executor(None, self._process.join, 5)
        self._conn.close()
        self._fail_all(EngineDead("the engine was closed"))

    # -- plumbing ------------------------------------------------------------------

    def _send(self, message: ToWorker) -> None:
        try:
            self._conn.send_bytes(encoder.encode(message))
        except OSError as error:
            raise EngineDead(f"the worker is gone ({error})") from error

    def _on_readable(self) -> None:
        try:
            while self._conn.poll():
                self._dispatch(from_worker_decoder.decode(self._conn.recv_bytes()))
        except (EOFError, OSError):
            self._on_worker_death()

    def _dispatch(self, message: FromWorker) -> None:
        if isinstance(message, Outputs):
            for output in message.outputs:
                queue = self._queues.get(output.request_id)
                if queue is not None:
                    queue.put_nowait(output)
        elif isinstance(message, Stats):
            if self._stats_waiters:
                self._stats_waiters.pop(0).set_result(message)
        elif isinstance(message, RequestFailed):
            queue = self._queues.get(message.request_id)
            if queue is not None:
                queue.put_nowait(error_from_code(message.code, message.message, message.param))

    def _on_worker_death(self) -> None:
        asyncio.get_running_loop().remove_reader(self._conn.fileno())
        self._process.join(timeout=1)
        self._dead = WorkerCrashed(f"the model's worker process {_death(self._process)}")
        logger.error("%s", self._dead.message)
        self._fail_all(self._dead)

    def _fail_all(self, error: LlmportError) -> None:
        for queue in self._queues.values():
            queue.put_nowait(error)
        for waiter in self._stats_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._stats_waiters.clear()


def _first_message(conn: Connection) -> FromWorker | None:
    try:
        message: FromWorker = from_worker_decoder.decode(conn.recv_bytes())
    except (EOFError, OSError):
        return None
    return message


def _death(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
