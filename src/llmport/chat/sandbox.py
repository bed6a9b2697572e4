"""The Jinja2 environment for templates that come from model files (untrusted input).

Jinja2's immutable sandbox already refuses attribute walks to Python internals
(``__class__``, ``__globals__``: the CVE-2024-34359 class) and any mutation. This adds
what it lacks against denial of service: a render deadline checked in loops, calls and
operators, a cap on ``range``, on ``*``/``**`` results, on the template's size and on the
output's, and recursion turned into an error.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 256 * 1024
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
MAX_RANGE = 100_000
RENDER_SECONDS = 2.0

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("deadline", default=0.0)


class RenderLimit(jinja2.TemplateError):
    """A template broke one of the limits above."""


def _check_time() -> None:
    deadline = _deadline.get()
    if deadline and time.monotonic() > deadline:
        raise RenderLimit(f"rendering took longer than {RENDER_SECONDS:.0f}s")


def limited_range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimit(f"range of {len(numbers)} items (limit {MAX_RANGE})")
    for number in numbers:
        if number % 256 == 0:
            _check_time()
        yield number


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        if operator == "**" and isinstance(right, int) and abs(right) > 128:
            raise RenderLimit(f"exponent {right} (limit 128)")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                is_repeat = isinstance(sized, str | list | tuple) and isinstance(count, int)
                if is_repeat and len(sized) * count > MAX_OUTPUT_CHARS:
                    raise RenderLimit("a repetition larger than the output limit")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_time()
        return super().call(__context, __obj, *args, **kwargs)


def render_limited(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Render with the deadline and the output cap; RenderLimit when one is broken."""
    token = _deadline.set(time.monotonic() + RENDER_SECONDS)
    try:
        pieces: list[str] = []
        size = 0
        for piece in template.generate(**context):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise RenderLimit(f"output over {MAX_OUTPUT_CHARS} characters")
            _check_time()
            pieces.append(piece)
        return "".join(pieces)
    except RecursionError:
        raise RenderLimit("the template recurses too deeply") from None
    finally:
        _deadline.reset(token)
