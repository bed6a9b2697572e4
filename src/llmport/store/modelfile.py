"""Ollama's Modelfile: parse its text into a ``Modelfile`` and write one back.

The syntax follows Ollama's parser (``parser/parser.go``): one instruction per line, names
case-insensitive, ``#`` comments on lines of their own, and each value bare to the end of
its line, ``"double-quoted"`` or ``\"\"\"triple-quoted\"\"\"`` (both quoted forms may span
lines). Every mistake is an ``InvalidParameter`` naming its line, so ``/api/create`` answers
400 with something the user can act on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from llmport.errors import InvalidParameter

# Typed as Ollama's api.Options fields are; any other name is refused, not silently ignored.
_INT_PARAMETERS = frozenset(
    {
        "num_ctx", "num_predict", "top_k", "seed", "repeat_last_n",
        "num_keep", "num_batch", "num_gpu", "num_thread",
    }
)  # fmt: skip
_FLOAT_PARAMETERS = frozenset(
    {
        "temperature", "top_p", "min_p", "repeat_penalty",
        "presence_penalty", "frequency_penalty", "typical_p",
    }
)  # fmt: skip
_LIST_PARAMETERS = frozenset({"stop"})
_ROLES = ("system", "user", "assistant")
# Valid in Ollama but meaningless here: named as unsupported rather than as unknown.
_UNSUPPORTED = frozenset({"adapter", "draft", "renderer", "parser", "requires"})

_SKIP = re.compile(r"(?:[ \t\r]*(?:#[^\n]*)?\n)*[ \t\r]*(?:#[^\n]*)?")  # blank, comment lines
_WORD = re.compile(r"(\S+)[ \t]*")
_LINE_END = re.compile(r"[ \t\r]*(?:\n|\Z)")
# As in Ollama, a triple-quoted block ends at the first line that ends with """.
_TRIPLE_CLOSE = re.compile(r'"""(?=[ \t\r]*(?:\n|\Z))')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r'\\(["\\])')
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Modelfile:
    """A parsed Modelfile; ``stop`` and other list parameters hold every value given."""

    from_: str
    parameters: dict[str, int | float | list[str]] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        """Modelfile text laid out as ``ollama show --modelfile`` does; it parses back equal."""
        lines = [f"FROM {_quote(self.from_)}"]
        if self.template is not None:
            lines.append(f"TEMPLATE {_quote_block(self.template)}")
        if self.system is not None:
            lines.append(f"SYSTEM {_quote_block(self.system)}")
        for name, value in self.parameters.items():
            for item in value if isinstance(value, list) else [value]:
                text = repr(item) if isinstance(item, float) else str(item)
                lines.append(f"PARAMETER {name} {_quote(text)}")
        lines += [f"MESSAGE {role} {_quote(content)}" for role, content in self.messages]
        lines += [f"LICENSE {_quote_block(text)}" for text in self.license]
        return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; any mistake is an ``InvalidParameter`` naming its line."""
    reader = _Reader(text.removeprefix("\ufeff"))
    draft = _Draft()
    while reader.next_instruction():
        line = reader.line
        _apply(draft, reader, reader.word("instruction"), line)
    return draft.finish()


def _quote(value: str) -> str:
    """Leave a value bare when it reads back unchanged, else double-quote it."""
    if value and value == value.strip() and "\n" not in value and not value.startswith('"'):
        return value
    return _double_quote(value)


def _quote_block(value: str) -> str:
    """Triple-quote a block as Ollama prints it, unless a line inside would end it early."""
    close = _TRIPLE_CLOSE.search(value + '"""')
    if close is not None and close.start() == len(value):
        return f'"""{value}"""'
    return _double_quote(value)


def _double_quote(value: str) -> str:
    """Quote anything: only backslash and double quote need escaping."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _error(line: int, problem: str) -> InvalidParameter:
    return InvalidParameter(f"Modelfile line {line}: {problem}", param="modelfile")


class _Reader:
    """A cursor over Modelfile text that knows its line number, for error messages."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    @property
    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def next_instruction(self) -> bool:
        """Skip blank and comment lines; False once the text is used up."""
        skipped = _SKIP.match(self.text, self.pos)
        if skipped is not None:  # Always: the pattern matches the empty string.
            self.pos = skipped.end()
        return self.pos < len(self.text)

    def word(self, what: str) -> str:
        """An instruction, parameter name or role: the next run of non-spaces on this line."""
        match = _WORD.match(self.text, self.pos)
        if match is None:
            raise _error(self.line, f"missing {what}")
        self.pos = match.end()
        return match.group(1)

    def value(self, what: str) -> str:
        """A bare, quoted or triple-quoted value, consuming the rest of its (last) line."""
        start = self.line
        if self.text.startswith('"""', self.pos):
            close = _TRIPLE_CLOSE.search(self.text, self.pos + 3)
            if close is None:
                raise _error(start, f'unterminated """ in {what}')
            value, self.pos = self.text[self.pos + 3 : close.start()], close.end()
        elif self.text.startswith('"', self.pos):
            quoted = _QUOTED.match(self.text, self.pos)
            if quoted is None:
                raise _error(start, f'unterminated " in {what}')
            value, self.pos = _ESCAPE.sub(r"\1", quoted.group(1)), quoted.end()
        else:
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            value, self.pos = self.text[self.pos : end].strip(), end
            if not value:
                raise _error(start, f"missing {what}")
        line_end = _LINE_END.match(self.text, self.pos)
        if line_end is None:
            raise _error(self.line, f"unexpected text after the closing quote of {what}")
        self.pos = line_end.end()
        return value


@dataclass
class _Draft:
    """What has been read so far: mutable while parsing, frozen by ``finish``."""

    from_: str | None = None
    from_line: int = 0
    scalars: dict[str, int | float] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)

    def finish(self) -> Modelfile:
        if self.from_ is None:
            raise InvalidParameter("Modelfile has no FROM line", param="modelfile")
        parameters: dict[str, int | float | list[str]] = {**self.scalars, **self.lists}
        return Modelfile(
            self.from_, parameters, self.template, self.system, self.license, self.messages
        )


def _apply(draft: _Draft, reader: _Reader, instruction: str, line: int) -> None:
    """Read one instruction's arguments into the draft; a repeated TEMPLATE/SYSTEM wins."""
    name = instruction.lower()
    if name in _UNSUPPORTED:
        raise _error(line, f"{name.upper()} is not supported")
    if name == "from":
        if draft.from_ is not None:
            raise _error(line, f"a second FROM (the first is on line {draft.from_line})")
        draft.from_, draft.from_line = reader.value("FROM model"), line
    elif name == "parameter":
        key = reader.word("PARAMETER name")
        _set_parameter(draft, key, reader.value(f"PARAMETER {key} value"), line)
    elif name == "message":
        role = reader.word("MESSAGE role")
        if role not in _ROLES:
            raise _error(line, f"MESSAGE role {role!r} is not one of {', '.join(_ROLES)}")
        draft.messages.append((role, reader.value("MESSAGE content")))
    elif name == "template":
        draft.template = reader.value("TEMPLATE")
    elif name == "system":
        draft.system = reader.value("SYSTEM")
    elif name == "license":
        draft.license.append(reader.value("LICENSE"))
    else:
        raise _error(line, f"unknown instruction {instruction!r}")


def _set_parameter(draft: _Draft, name: str, raw: str, line: int) -> None:
    """Type a PARAMETER by its name; list parameters accumulate, others: the last one wins."""
    if name in _LIST_PARAMETERS:
        draft.lists.setdefault(name, []).append(raw)
    elif name in _INT_PARAMETERS:
        if not _INT.fullmatch(raw):
            raise _error(line, f"PARAMETER {name} takes an integer, not {raw!r}")
        draft.scalars[name] = int(raw)
    elif name in _FLOAT_PARAMETERS:
        if not (_FLOAT.fullmatch(raw) and math.isfinite(float(raw))):
            raise _error(line, f"PARAMETER {name} takes a number, not {raw!r}")
        draft.scalars[name] = float(raw)
    else:
        raise _error(line, f"unknown parameter {name!r}")
