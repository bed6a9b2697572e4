"""The engine seam: what every layer above an engine sees of it, and nothing else.

``EngineClient`` is a loaded model's handle in the server (the manager leases it to
routes); ``WorkerEngine`` is what a worker process drives. An engine kind (llama.cpp's
batching engine today) provides a ``WorkerEngine``; a runtime (a local process
today) runs it somewhere and hands back an ``EngineClient``. Neither side knows the
other's implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import msgspec

from llmport.errors import LlmportError
from llmport.types import Output, Request


class EngineInfo(msgspec.Struct, kw_only=True):
    """What the layers above need to know about a loaded engine (fixed once loaded)."""

    vocab_size: int
    max_model_len: int
    num_kv_tokens: int
    max_num_seqs: int
    #: Token texts chat templates use (``{{ bos_token }}``); "" when the model has none.
    bos_token: str = ""
    eos_token: str = ""
    #: The engine kind that serves it (``llama_cpp``), and where it runs (``local``).
    kind: str = ""
    device: str = "cpu"
    #: A reranker: an ``embed`` request returns its classifier's scores for the prompt
    #: (a query and document pair), not a normalized embedding.
    is_reranker: bool = False
    #: The sleep levels the engine offers, shallowest first (vLLM on a GPU: 1 keeps the
    #: weights in host memory and drops the KV cache, 2 drops both); empty: it cannot sleep.
    sleep_levels: list[int] = msgspec.field(default_factory=list)
    #: Whether prompts may show it images, and the text that marks each image's place in
    #: a prompt (``<image>``; ``{n}`` in it numbers them from 1); "" where the engine
    #: places images itself.
    takes_images: bool = False
    image_placeholder: str = ""


class EngineStats(msgspec.Struct):
    """A snapshot of the engine's load (for metrics, and for tests to see leaks)."""

    num_requests: int
    num_running: int
    num_waiting: int
    num_cached_prefixes: int
    num_used_kv_cells: int
    num_kv_cells: int


class EngineClient(Protocol):
    """A loaded model as the server uses it; use from one asyncio event loop.

    ``generate`` streams a request's deltas; leaving the iterator early aborts the
    request in the engine. When the engine dies, every live iterator ends with
    WorkerCrashed and ``is_alive`` turns False; the manager then replaces it.
    """

    info: EngineInfo

    @property
    def is_alive(self) -> bool: ...

    @property
    def num_requests(self) -> int:
        """Requests this client is streaming now."""
        ...

    @property
    def pid(self) -> int | None:
        """The worker's process id where it runs locally (None elsewhere)."""
        ...

    def generate(self, request: Request) -> AsyncIterator[Output]: ...

    async def abort(self, request_id: str) -> None: ...

    async def stats(self) -> EngineStats: ...

    async def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    async def detokenize(self, token_ids: list[int]) -> str:
        """Raises InvalidParameter for ids outside the vocabulary."""
        ...

    async def reset_prefix_cache(self) -> None: ...

    async def sleep(self, level: int) -> None:
        """Free memory without exiting, at ``level`` (one of ``info.sleep_levels``); only
        while no request is in flight. ModelLoadFailed if the engine cannot."""
        ...

    async def wake_up(self) -> None:
        """Undo ``sleep``: reload what it freed; ModelLoadFailed if that fails."""
        ...

    def fail_requests(self, error: LlmportError) -> None:
        """End every request in flight with ``error`` and abort them in the engine."""
        ...

    async def close(self) -> None:
        """Stop the engine and free its memory; requests in flight end with EngineDead."""
        ...


class WorkerEngine(Protocol):
    """One model's engine as its worker drives it: requests in, a step at a time.

    Owned by one thread (the worker's loop); nothing here is thread-safe. ``step``
    runs only while ``has_unfinished_requests``; a request the engine refuses raises
    LlmportError from ``add_request`` and leaves the others untouched.
    """

    @property
    def info(self) -> EngineInfo: ...

    @property
    def has_unfinished_requests(self) -> bool: ...

    @property
    def unfinished_request_ids(self) -> list[str]: ...

    def add_request(self, request: Request) -> list[int]:
        """Queue ``request``; returns its prompt's token ids."""
        ...

    def abort_request(self, request_id: str) -> list[Output]: ...

    def step(self) -> list[Output]: ...

    def stats(self) -> EngineStats: ...

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]: ...

    def detokenize(self, token_ids: list[int]) -> str:
        """Raises InvalidParameter for ids outside the vocabulary."""
        ...

    def reset_prefix_cache(self) -> None: ...

    def close(self) -> None: ...
