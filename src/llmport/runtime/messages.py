"""What crosses the pipe between an EngineClient and its worker process (msgpack).

Outputs travel batched: one ``Outputs`` message per engine step.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmport.engine.protocol import EngineInfo, EngineStats
from llmport.engine.registry import LoadTarget
from llmport.types import Output, Request


class Load(msgspec.Struct, tag="load", kw_only=True):
    """Sent once to a spawned (warm) worker: load these files with this engine kind."""

    kind: str
    target: LoadTarget
    config: dict[str, Any]


class AddRequest(msgspec.Struct, tag="add"):
    request: Request


class AbortRequest(msgspec.Struct, tag="abort"):
    request_id: str


class ResetPrefixCache(msgspec.Struct, tag="reset_prefix_cache"):
    pass


class Shutdown(msgspec.Struct, tag="shutdown"):
    pass


class GetStats(msgspec.Struct, tag="get_stats"):
    call_id: int


class Tokenize(msgspec.Struct, tag="tokenize"):
    call_id: int
    text: str
    add_special_tokens: bool = True


class Detokenize(msgspec.Struct, tag="detokenize"):
    call_id: int
    token_ids: list[int]


class Sleep(msgspec.Struct, tag="sleep"):
    """Free memory at ``level`` of the engine's sleep levels (answered with a Reply)."""

    call_id: int
    level: int


class WakeUp(msgspec.Struct, tag="wake_up"):
    call_id: int


class Reply(msgspec.Struct, tag="reply"):
    """The answer to the call with ``call_id`` (exactly one field is set)."""

    call_id: int
    stats: EngineStats | None = None
    token_ids: list[int] | None = None
    text: str | None = None
    error: str | None = None


class Ready(msgspec.Struct, tag="ready"):
    """The model is loaded; what the caller needs to know about it."""

    info: EngineInfo


class Outputs(msgspec.Struct, tag="outputs"):
    outputs: list[Output]


class RequestFailed(msgspec.Struct, tag="failed"):
    """A request was refused or broke; the worker keeps serving the others."""

    request_id: str
    code: str
    message: str
    param: str | None = None


class LoadFailed(msgspec.Struct, tag="load_failed"):
    code: str
    message: str


ToWorker = (
    Load
    | AddRequest
    | AbortRequest
    | ResetPrefixCache
    | Shutdown
    | GetStats
    | Tokenize
    | Detokenize
    | Sleep
    | WakeUp
)
FromWorker = Ready | Outputs | RequestFailed | LoadFailed | Reply

encoder = msgspec.msgpack.Encoder()
to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)
