"""Ollama bodies to engine types, and engine deltas to Ollama's JSON objects."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from llmport.chat.structured import response_grammar
from llmport.errors import InvalidParameter
from llmport.types import Output, SamplingParams, Timings

logger = logging.getLogger(__name__)

#: Ollama's defaults (api.DefaultOptions) for what a request and the model leave unset.
DEFAULT_OPTIONS: dict[str, Any] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
}
_FLOATS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
_INTS = {"top_k": "top_k", "repeat_last_n": "penalty_last_n", "seed": "seed"}
#: Options Ollama has that change nothing here (runner, memory and GPU knobs).
_IGNORED = frozenset({
    "num_keep", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "use_mlock",
    "numa", "low_vram", "f16_kv", "vocab_only", "logits_all", "typical_p", "tfs_z",
    "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline",
})  # fmt: skip


def to_sampling_params(options: dict[str, Any] | None, defaults: dict[str, Any]) -> SamplingParams:
    """Request options over the model's parameters over Ollama's defaults."""
    merged = {**DEFAULT_OPTIONS, **defaults, **(options or {})}
    fields: dict[str, Any] = {"max_tokens": _num_predict(merged.pop("num_predict", -1))}
    for name, value in merged.items():
        if name in _FLOATS:
            fields[_FLOATS[name]] = _number(name, value, float)
        elif name in _INTS:
            fields[_INTS[name]] = _number(name, value, int)
        elif name == "stop":
            fields["stop"] = _stop(value)
        elif name in _IGNORED or name == "num_ctx":
            continue
        else:
            logger.warning("ignoring unknown option %r", name)
    if fields.get("seed", 0) < 0:
        fields["seed"] = None  # Ollama's -1: a fresh seed.
    if fields.get("penalty_last_n") == 0:
        fields["repetition_penalty"] = 1.0  # Ollama's 0 turns the penalty off.
    return SamplingParams(**fields)


def _num_predict(value: Any) -> int | None:
    number = _number("num_predict", value, int)
    if number in (-1, -2):
        return None  # No limit / fill the context: the engine caps at the context.
    if number <= 0:
        raise InvalidParameter(
            f"num_predict must be positive, -1 (no limit) or -2 (fill the context), got {number}",
            param="options.num_predict",
        )
    return int(number)


def _number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not math.isfinite(float(value)):
        raise InvalidParameter(
            f"option {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}",
            param=f"options.{name}",
        )
    return kind(value)


def _stop(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidParameter("option stop must be a string or a list of strings", param="stop")


def check_num_ctx(options: dict[str, Any] | None, max_model_len: int) -> None:
    """A num_ctx beyond what the loaded model serves is refused, never silently cut."""
    if not options or "num_ctx" not in options:
        return
    num_ctx = _number("num_ctx", options["num_ctx"], int)
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
