"""Ollama's option names (a Modelfile's PARAMETERs, Ollama's request ``options``) as
SamplingParams fields: one mapping for the Modelfile defaults every dialect gets and
for Ollama's own requests."""

from __future__ import annotations

import logging
import math
from typing import Any

from llmport.errors import InvalidParameter

logger = logging.getLogger(__name__)

_FLOATS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "min_p": "min_p",
    "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
_INTS = {"top_k": "top_k", "repeat_last_n": "penalty_last_n", "seed": "seed"}
#: Options Ollama has that change nothing here (runner, memory and GPU knobs; num_ctx is
#: checked against the loaded context by Ollama's routes).
IGNORED_OPTIONS = frozenset({
    "num_keep", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "use_mlock",
    "numa", "low_vram", "f16_kv", "vocab_only", "logits_all", "typical_p", "tfs_z",
    "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "num_ctx",
})  # fmt: skip


def sampling_fields(options: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams fields for Ollama-named ``options``; InvalidParameter names a bad one.

    Ollama's special values mean what they mean there: ``num_predict`` -1 or -2 is no
    limit, ``seed`` < 0 a fresh seed, ``repeat_last_n`` 0 turns the penalty off.
    """
    fields: dict[str, Any] = {}
    for name, value in options.items():
        if name in _FLOATS:
            fields[_FLOATS[name]] = number(name, value, float)
        elif name in _INTS:
            fields[_INTS[name]] = number(name, value, int)
        elif name == "num_predict":
            fields["max_tokens"] = _num_predict(value)
        elif name == "stop":
            fields["stop"] = _stop(value)
        elif name not in IGNORED_OPTIONS:
            logger.warning("ignoring unknown option %r", name)
    if fields.get("seed", 0) < 0:
        fields["seed"] = None
    if fields.get("penalty_last_n") == 0:
        fields["repetition_penalty"] = 1.0
    return fields


def _num_predict(value: Any) -> int | None:
    count = number("num_predict", value, int)
    if count in (-1, -2):
        return None  # No limit / fill the context: the engine caps at the context.
    if count <= 0:
        raise InvalidParameter(
            f"num_predict must be positive, -1 (no limit) or -2 (fill the context), got {count}",
            param="options.num_predict",
        )
    return int(count)


def number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
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
