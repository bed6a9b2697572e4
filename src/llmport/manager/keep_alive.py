"""Ollama's keep_alive: how long an idle model stays loaded.

A duration string (``"5m"``, ``"1h30m"``, ``"90s"``) or a number of seconds;
``0`` unloads as soon as the last request ends; any negative value keeps the
model loaded forever (``math.inf`` here).
"""

from __future__ import annotations

import math
import re

from llmport.errors import InvalidParameter

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: str | float | None) -> float | None:
    """Seconds (``math.inf`` = forever), or None when not given."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidParameter("keep_alive must be a duration or a number", param="keep_alive")
    if isinstance(value, int | float):
        if math.isnan(value):  # Compares false with everything: no timer could use it.
            raise InvalidParameter("keep_alive must be a number, not NaN", param="keep_alive")
        return math.inf if value < 0 else float(value)
    text = value.strip()
    try:
        return parse_keep_alive(float(text))
    except ValueError:
        pass
    negative = text.startswith("-")
    body = text.lstrip("+-")
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise InvalidParameter(
            f"keep_alive {value!r} is not a duration (examples: 5m, 1h30m, 30s, 0, -1)",
            param="keep_alive",
        )
    if negative:
        return math.inf
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
