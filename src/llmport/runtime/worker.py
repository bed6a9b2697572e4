"""The worker process: owns one model's engine and runs its step loop.

It starts without a model, imports the engine kinds, and waits for one ``Load``: so
a server keeps a spare warm and a model swap costs little more than the mmap. The
engine comes from the registry's factory for the kind the server asked for.
Once loaded it blocks on the pipe when idle and drains it between steps when
busy, so a new request or an abort waits at most one step.
"""

from __future__ import annotations

import logging
import os
from multiprocessing.connection import Connection

from llmport.engine.protocol import WorkerEngine
from llmport.engines.kinds import default_registry
from llmport.errors import LlmportError
from llmport.runtime.files import localize
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
    to_worker_decoder,
)
from llmport.types import Output

logger = logging.getLogger(__name__)


def run_worker(
    conn: Connection, log_level: int, warm_up: bool = True, exit_process: bool = True
) -> None:
    """Process entry point (spawned): import, wait for Load, say Ready, serve until Shutdown.

    ``exit_process`` False returns instead of ending the process (a Ray actor ends itself
    through Ray, so that Ray counts the exit as intended)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = default_registry()
    for kind in registry.kinds() if warm_up else []:  # A spare imports before any load.
        if kind.uses_spare:
            kind.warm_up()
    try:
        load = to_worker_decoder.decode(conn.recv_bytes())
    except (EOFError, OSError):
        return  # A spare that was never used.
    if not isinstance(load, Load):
        return
    try:
        kind = registry.get(load.kind)
        engine = kind.create(localize(load.target), kind.config_class(**load.config))
    except LlmportError as error:
        _send(conn, LoadFailed(code=error.code, message=error.message))
        return
    _send(conn, Ready(engine.info))
    try:
        _serve(engine, conn)
    except (EOFError, BrokenPipeError):
        logger.info("the engine client went away; worker exits")
    finally:
        engine.close()
    if exit_process:
        _exit_now(conn)
    conn.close()


def _exit_now(conn: Connection) -> None:
    """End the process as soon as the engine has freed its memory: the server waits for
    this exit before it loads the next model, and the interpreter's own teardown (every
    module's finalizers) frees nothing that matters once the process is gone."""
    conn.close()
    logging.shutdown()
    os._exit(0)


def _serve(engine: WorkerEngine, conn: Connection) -> None:
    while True:
        timeout = 0.0 if engine.has_unfinished_requests else None
        while conn.poll(timeout):
            message = to_worker_decoder.decode(conn.recv_bytes())
            if isinstance(message, Shutdown):
                return
            _handle(engine, conn, message)
            timeout = 0.0
        if engine.has_unfinished_requests:
            _step(engine, conn)


def _handle(engine: WorkerEngine, conn: Connection, message: ToWorker) -> None:
    if isinstance(message, AddRequest):
        request_id = message.request.request_id
        try:
            engine.add_request(message.request)
        except LlmportError as error:
            _send(conn, _failure(request_id, error))
        except Exception as error:
            # A bug must fail this request only, never the worker and its other requests.
            logger.exception("adding request %s failed", request_id)
            engine.abort_request(request_id)
            _send(conn, RequestFailed(request_id, "server_error", f"{error!r}"))
    elif isinstance(message, AbortRequest):
        _send_outputs(conn, engine.abort_request(message.request_id))
    elif isinstance(message, ResetPrefixCache):
        engine.reset_prefix_cache()
    elif isinstance(message, GetStats):
        _send(conn, Reply(message.call_id, stats=engine.stats()))
    elif isinstance(message, Tokenize):
        ids = engine.tokenize(message.text, message.add_special_tokens)
        _send(conn, Reply(message.call_id, token_ids=ids))
    elif isinstance(message, Detokenize):
        try:
            _send(conn, Reply(message.call_id, text=engine.detokenize(message.token_ids)))
        except LlmportError as error:
            _send(conn, Reply(message.call_id, error=error.message))
    elif isinstance(message, Sleep | WakeUp):
        _send(conn, _sleep_or_wake(engine, message))


def _sleep_or_wake(engine: WorkerEngine, message: Sleep | WakeUp) -> Reply:
    """Engines that can sleep (vLLM on a GPU) have ``sleep(level)`` and ``wake_up()``."""
    name = "sleep" if isinstance(message, Sleep) else "wake_up"
    method = getattr(engine, name, None)
    if method is None:
        return Reply(message.call_id, error=f"this engine cannot {name.replace('_', ' ')}")
    try:
        method(message.level) if isinstance(message, Sleep) else method()
    except Exception as error:  # The engine's own failure, reported to the manager.
        logger.exception("%s failed", name)
        return Reply(message.call_id, error=f"{name} failed: {error}")
    return Reply(message.call_id, text="")


def _step(engine: WorkerEngine, conn: Connection) -> None:
    try:
        outputs = engine.step()
    except Exception as error:
        # A broken step must not take the worker down: fail what was in flight.
        logger.exception("engine step failed; failing every live request")
        for request_id in engine.unfinished_request_ids:
            engine.abort_request(request_id)
            _send(conn, RequestFailed(request_id, "server_error", f"engine error: {error}"))
        return
    _send_outputs(conn, outputs)


def _failure(request_id: str, error: LlmportError) -> RequestFailed:
    return RequestFailed(request_id, error.code, error.message, error.param)


def _send_outputs(conn: Connection, outputs: list[Output]) -> None:
    if outputs:
        _send(conn, Outputs(outputs))


def _send(conn: Connection, message: FromWorker) -> None:
    conn.send_bytes(encoder.encode(message))
