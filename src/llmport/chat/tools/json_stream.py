"""Streaming JSON tool calls: names as soon as they are whole, arguments as they arrive.

Scans ``{"name": "...", "arguments"|"parameters": {...}}`` objects in a growing text (the
part after a format's call marker) and reports, each time, only what is new. The
arguments are the model's own text of the object, so the pieces streamed add up to
exactly what a whole answer gives.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGUMENTS = re.compile(r'"(?:arguments|parameters)"\s*:\s*')


@dataclass
class ToolDelta:
    """A piece of call ``index``: its id and name first, then argument text."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass
class _Call:
    name: str
    id: str = field(default_factory=lambda: f"call_{secrets.token_hex(12)}")
    args_start: int | None = None
    args_end: int | None = None  # Set once the arguments object is closed.
    num_sent: int = 0  # Argument characters already streamed.


class JsonCallStream:
    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self._position = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def update(self, text: str) -> list[ToolDelta]:
        """What is new in ``text`` (the whole call region so far) since the last update."""
        deltas: list[ToolDelta] = []
        while True:
            call = self.calls[-1] if self.calls else None
            if call is None or call.args_end is not None:
                match = _NAME.search(text, self._position)
                if match is None:
                    break
                name = json.loads(f'"{match.group(1)}"')
                self.calls.append(_Call(name))
                deltas.append(ToolDelta(len(self.calls) - 1, id=self.calls[-1].id, name=name))
                self._position = match.end()
            elif call.args_start is None:
                match = _ARGUMENTS.search(text, self._position)
                if match is None or match.end() >= len(text):
                    break
                if text[match.end()] != "{":
                    break  # Not an object: left to the whole-answer parse.
                call.args_start = self._position = match.end()
            else:
                self._scan_object(text, call)
                end = call.args_end if call.args_end is not None else len(text)
                piece = text[call.args_start + call.num_sent : end]
                if piece:
                    deltas.append(ToolDelta(len(self.calls) - 1, arguments=piece))
                    call.num_sent += len(piece)
                if call.args_end is None:
                    break
        return deltas

    def _scan_object(self, text: str, call: _Call) -> None:
        """Track braces and strings from where the last scan stopped."""
        for index in range(self._position, len(text)):
            char = text[index]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    call.args_end = self._position = index + 1
                    return
        self._position = len(text)

    def arguments(self, text: str, call: _Call) -> str | None:
        """The call's arguments if they are a whole, valid JSON object."""
        if call.args_start is None or call.args_end is None:
            return None
        raw = text[call.args_start : call.args_end]
        try:
            return raw if isinstance(json.loads(raw), dict) else None
        except ValueError:
            return None
