"""The worker process: owns one model's EngineCore and runs its step loop.

It starts without a model, imports llama.cpp, and waits for one ``Load``: so a
server keeps a spare warm and a model swap costs little more than the mmap.
Once loaded it blocks on the pipe when idle and drains it between steps when
busy, so a new request or an abort waits at most one step.
"""

from __future__ import annotations

import logging
from multiprocessing.connection import Connection
from pathlib import Path

from llmport.config import EngineConfig
from llmport.engine.core import EngineCore
from llmport.engine.messages import (
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
    Tokenize,
    ToWorker,
    encoder,
    to_worker_decoder,
)
from llmport.errors import LlmportError
from llmport.types import Output

logger = logging.getLogger(__name__)


def run_worker(conn: Connection, log_level: int) -> None:
    """Process entry point (spawned): import, wait for Load, say Ready, serve until Shutdown."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from llmport.backends.llama_cpp import LlamaCppBackend

    try:
        load = to_worker_decoder.decode(conn.recv_bytes())
    except (EOFError, OSError):
        return  # A spare that was never used.
    if not isinstance(load, Load):
        return
    try:
        config = EngineConfig(**load.config)
        core = EngineCore(LlamaCppBackend(Path(load.model_path), config), config)
    except LlmportError as error:
        _send(conn, LoadFailed(code=error.code, message=error.message))
        return
    _send(conn, _ready(core))
    try:
        _serve(core, conn)
    except (EOFError, BrokenPipeError):
        logger.info("the engine client went away; worker exits")
    finally:
        core.close()


def _ready(core: EngineCore) -> Ready:
    backend = core.backend
    return Ready(
        vocab_size=backend.vocab_size,
        max_model_len=backend.max_model_len,
        num_kv_tokens=backend.num_kv_tokens,
        max_num_seqs=core.config.max_num_seqs,
        bos_token=backend.bos_token,
        eos_token=backend.eos_token,
    )


def _serve(core: EngineCore, conn: Connection) -> None:
    while True:
        timeout = 0.0 if core.has_unfinished_requests else None
        while conn.poll(timeout):
            message = to_worker_decoder.decode(conn.recv_bytes())
            if isinstance(message, Shutdown):
                return
            _handle(core, conn, message)
            timeout = 0.0
        if core.has_unfinished_requests:
            _step(core, conn)


def _handle(core: EngineCore, conn: Connection, message: ToWorker) -> None:
    if isinstance(message, AddRequest):
        try:
            core.add_request(message.request)
        except LlmportError as error:
            _send(conn, _failure(message.request.request_id, error))
        except Exception as error:
            # A bug must fail this request only, never the worker and its other requests.
            logger.exception("adding request %s failed", message.request.request_id)
            core.abort_request(message.request.request_id)
            _send(conn, RequestFailed(message.request.request_id, "server_error", f"{error!r}"))
    elif isinstance(message, AbortRequest):
        _send_outputs(conn, core.abort_request(message.request_id))
    elif isinstance(message, ResetPrefixCache):
        core.reset_prefix_cache()
    elif isinstance(message, GetStats):
        _send(conn, Reply(message.call_id, stats=core.stats()))
    elif isinstance(message, Tokenize):
        ids = core.backend.tokenize(message.text, message.add_special_tokens)
        _send(conn, Reply(message.call_id, token_ids=ids))
    elif isinstance(message, Detokenize):
        _send(conn, _detokenize(core, message))


def _detokenize(core: EngineCore, message: Detokenize) -> Reply:
    vocab_size = core.backend.vocab_size
    bad = [t for t in message.token_ids if not 0 <= t < vocab_size]
    if bad:
        return Reply(message.call_id, error=f"token ids {bad[:5]} are outside the vocabulary")
    data = b"".join(core.backend.piece(t) for t in message.token_ids)
    return Reply(message.call_id, text=data.decode(errors="replace"))


def _step(core: EngineCore, conn: Connection) -> None:
    try:
        outputs = core.step()
    except Exception as error:
        # A broken step must not take the worker down: fail what was in flight.
        logger.exception("engine step failed; failing every live request")
        scheduler = core.scheduler
        for request_id in {s.request_id for s in [*scheduler.running, *scheduler.waiting]}:
            core.abort_request(request_id)
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
