"""What crosses the pipe between an EngineClient and its worker process (msgpack).

Outputs travel batched: one ``Outputs`` message per engine step.
"""

from __future__ import annotations

import msgspec

from llmport.types import Output, Request


class AddRequest(msgspec.Struct, tag="add"):
    request: Request


class AbortRequest(msgspec.Struct, tag="abort"):
    request_id: str


class ResetPrefixCache(msgspec.Struct, tag="reset_prefix_cache"):
    pass


class Shutdown(msgspec.Struct, tag="shutdown"):
    pass


class Ready(msgspec.Struct, tag="ready"):
    """The model is loaded; what the caller needs to know about it."""

    vocab_size: int
    max_model_len: int
    num_kv_tokens: int
    max_num_seqs: int


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


ToWorker = AddRequest | AbortRequest | ResetPrefixCache | Shutdown
FromWorker = Ready | Outputs | RequestFailed | LoadFailed

encoder = msgspec.msgpack.Encoder()
to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)
