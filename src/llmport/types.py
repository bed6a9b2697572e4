"""Engine-facing request and output types, shared by every layer (no HTTP here).

They are msgspec structs: cheap to build, and they cross the worker pipe as
msgpack without a schema of their own.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import msgspec

from llmport.errors import InvalidParameter

#: The worker pipe (msgpack) carries 64-bit integers: larger counts, seeds and token ids
#: are refused before they reach it.
_INT64_RANGE = range(-(2**63), 2**63)


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


class SamplingParams(msgspec.Struct, kw_only=True):
    """How to pick tokens and when to stop, named as vLLM names them.

    ``temperature == 0`` is greedy. ``seed`` None draws a fresh seed per request.
    """

    n: int = 1
    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    stop_token_ids: list[int] = msgspec.field(default_factory=list)
    ignore_eos: bool = False
    logit_bias: dict[int, float] = msgspec.field(default_factory=dict)
    logprobs: int | None = None
    include_stop_str_in_output: bool = False
    #: A llama.cpp GBNF grammar the output must follow (structured outputs, tool calls).
    grammar: str | None = None

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    def validate(self, vocab_size: int) -> None:
        """Raise InvalidParameter naming the first bad field."""
        for name in ("n", "max_tokens", "top_k", "penalty_last_n", "seed"):
            value = getattr(self, name)
            _check(
                value is None or value in _INT64_RANGE,
                name,
                f"{name} must be a 64-bit integer, got {value}",
            )
        _check(self.n >= 1, "n", f"n must be >= 1, got {self.n}")
        _check(
            self.max_tokens is None or self.max_tokens >= 1,
            "max_tokens",
            f"max_tokens must be >= 1, got {self.max_tokens}",
        )
        _check(
            math.isfinite(self.temperature) and self.temperature >= 0.0,
            "temperature",
            f"temperature must be >= 0, got {self.temperature}",
        )
        _check(0.0 < self.top_p <= 1.0, "top_p", f"top_p must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, "top_k", f"top_k must be >= 0 (0 = off), got {self.top_k}")
        _check(0.0 <= self.min_p <= 1.0, "min_p", f"min_p must be in [0, 1], got {self.min_p}")
        _check(
            self.repetition_penalty > 0.0,
            "repetition_penalty",
            f"repetition_penalty must be > 0, got {self.repetition_penalty}",
        )
        _check(
            -2.0 <= self.presence_penalty <= 2.0,
            "presence_penalty",
            f"presence_penalty must be in [-2, 2], got {self.presence_penalty}",
        )
        _check(
            -2.0 <= self.frequency_penalty <= 2.0,
            "frequency_penalty",
            f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}",
        )
        _check(
            self.penalty_last_n >= -1,
            "penalty_last_n",
            f"penalty_last_n must be >= -1 (-1 = whole context), got {self.penalty_last_n}",
        )
        _check(all(self.stop), "stop", "stop strings must not be empty")
        bad_ids = [t for t in self.stop_token_ids if not 0 <= t < vocab_size]
        _check(
            not bad_ids,
            "stop_token_ids",
            f"stop_token_ids {bad_ids} are not in the vocabulary (size {vocab_size})",
        )
        bad_bias = [t for t in self.logit_bias if not 0 <= t < vocab_size]
        _check(
            not bad_bias,
            "logit_bias",
            f"logit_bias token ids {bad_bias} are not in the vocabulary (size {vocab_size})",
        )
        _check(
            self.logprobs is None or 0 <= self.logprobs <= 20,
            "logprobs",
            f"logprobs must be in [0, 20], got {self.logprobs}",
        )


def check_token_ids(token_ids: list[int], vocab_size: int, param: str) -> None:
    """Raise InvalidParameter for ids outside the vocabulary (huge ones never reach the
    worker: the pipe carries only 64-bit integers)."""
    bad = [t for t in token_ids if not 0 <= t < vocab_size]
    _check(not bad, param, f"token ids {bad[:5]} are outside the vocabulary (size {vocab_size})")


def _check(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise InvalidParameter(message, param=param)


class Image(msgspec.Struct, frozen=True):
    """An image a prompt shows the model: the file's bytes (PNG, JPEG...), decoded only by
    the engine that takes images, and where the client put it (``messages[1].images[0]``),
    so a refusal names the field."""

    data: bytes
    where: str


class Request(msgspec.Struct, kw_only=True):
    """One generation request as the engine receives it.

    Exactly one of ``prompt`` (text, tokenized by the engine with the model's
    own tokenizer) or ``prompt_token_ids`` is set.
    """

    request_id: str
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    params: SamplingParams = msgspec.field(default_factory=SamplingParams)
    #: False for a rendered chat template, which writes BOS itself.
    add_special_tokens: bool = True
    #: Return the prompt's embedding (last token's final hidden state, L2-normalized)
    #: instead of generating; ``params`` is ignored.
    embed: bool = False
    #: Images, in the order of their placeholders in the prompt.
    images: list[Image] = msgspec.field(default_factory=list)


class TokenLogprob(msgspec.Struct, array_like=True):
    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]]


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    #: Prompt tokens whose KV came from the prefix cache instead of prefill.
    cached_tokens: int = 0


class Timings(msgspec.Struct, kw_only=True):
    """Monotonic seconds; durations are derived by whoever reports them."""

    arrival: float
    first_scheduled: float | None = None
    first_token: float | None = None
    finished: float | None = None


class Output(msgspec.Struct, kw_only=True):
    """A delta of one request's choice ``index``: what is new since the last one."""

    request_id: str
    index: int = 0
    text: str = ""
    token_ids: list[int] = msgspec.field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    #: Set on the first output of a request (after tokenization).
    prompt_token_ids: list[int] | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    #: An error that ended this request (the engine keeps serving others).
    error: str | None = None
    #: For an ``embed`` request: the prompt's embedding.
    embedding: list[float] | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None or self.error is not None


class GenerationRequest(msgspec.Struct, kw_only=True):
    """What both API dialects turn a request into: a model name, a prompt or messages."""

    request_id: str
    model: str
    params: SamplingParams
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    #: Seconds the model stays loaded after this request (inf = forever); None = default.
    keep_alive: float | None = None
    embed: bool = False
    #: A Jinja2 chat template that overrides the model's (Modelfile TEMPLATE, --chat-template).
    chat_template: str | None = None
    #: Extra variables for the chat template (``enable_thinking``, ``reasoning_effort``).
    chat_template_kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The ``params`` fields the client set; the model's Modelfile fills the others.
    params_set: frozenset[str] = frozenset()
    #: Images, in the order the messages show them (a message's ``IMAGE_COUNT`` key says
    #: how many are its own); for a prompt, all of them lead it.
    images: list[Image] = msgspec.field(default_factory=list)
    #: A conversation: the Modelfile's SYSTEM and MESSAGEs lead it (Ollama's generate
    #: route renders its own prompt and sets this False).
    is_chat: bool = True
