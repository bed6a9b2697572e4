"""Ollama bodies to engine types, and engine deltas to Ollama's JSON objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmport.chat.structured import response_grammar
from llmport.errors import InvalidParameter
from llmport.models.parameters import number, sampling_fields
from llmport.types import Output, SamplingParams, Timings

#: Ollama's defaults (api.DefaultOptions) for what a request and the model leave unset.
DEFAULT_OPTIONS: dict[str, Any] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
}


def to_sampling_params(options: dict[str, Any] | None) -> tuple[SamplingParams, frozenset[str]]:
    """The request's options over Ollama's defaults, and the fields the request set (a
    model's Modelfile PARAMETERs fill the others, after this)."""
    explicit = sampling_fields(options or {})
    params = SamplingParams(**{**sampling_fields(DEFAULT_OPTIONS), "max_tokens": None, **explicit})
    return params, frozenset(explicit)


def check_num_ctx(options: dict[str, Any] | None, max_model_len: int) -> None:
    """A num_ctx beyond what the loaded model serves is refused, never silently cut."""
    if not options or "num_ctx" not in options:
        return
    num_ctx = number("num_ctx", options["num_ctx"], int)
    if num_ctx <= 0 or num_ctx > max_model_len:
        raise InvalidParameter(
            f"num_ctx {num_ctx}: this server runs the model with a context of {max_model_len} "
            "tokens (start it with --max-model-len to change that)",
            param="options.num_ctx",
        )


def format_grammar(value: str | dict[str, Any] | None) -> str | None:
    """Ollama's ``format``: ``"json"`` or a JSON schema, enforced by a grammar."""
    if value in (None, ""):
        return None
    if value == "json":
        return response_grammar("json_object")
    if isinstance(value, dict):
        return response_grammar("json_schema", value)
    raise InvalidParameter(f'format must be "json" or a JSON schema, not {value!r}', param="format")


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ns(seconds: float | None) -> int:
    return 0 if seconds is None else max(0, int(seconds * 1e9))


def final_fields(output: Output, total_seconds: float, load_seconds: float) -> dict[str, Any]:
    """The counts and durations (nanoseconds) Ollama puts in its last object."""
    usage = output.usage
    timings = output.timings or Timings(arrival=0.0)
    started = timings.first_scheduled or timings.arrival
    first = timings.first_token or started
    return {
        "done": True,
        "done_reason": "length" if output.finish_reason == "length" else "stop",
        "total_duration": ns(total_seconds),
        "load_duration": ns(load_seconds),
        "prompt_eval_count": usage.prompt_tokens if usage else 0,
        "prompt_eval_duration": ns(first - started),
        "eval_count": usage.completion_tokens if usage else 0,
        "eval_duration": ns((timings.finished or first) - first),
    }
