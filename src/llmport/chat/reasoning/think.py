"""The ``<think>...</think>`` family: DeepSeek-R1 (``deepseek_r1``) and Qwen3 (``qwen3``).

Both write their reasoning between ``<think>`` and ``</think>``, then the answer. They
differ in how an answer opens: DeepSeek-R1's templates put ``<think>`` in the prompt, so
its answers start inside the reasoning with or without the tag; Qwen3 reasons only when
the answer opens with ``<think>`` (``enable_thinking=False`` gives a plain answer). An
answer that ends before ``</think>`` (a cut at ``max_tokens``) is all reasoning.

Streaming holds back only what could still be a tag (a partial ``<think>`` at the start,
a partial ``</think>`` at the end) and the whitespace between the reasoning and the
answer, so the pieces add up to exactly what the whole answer's split gives.
"""

from __future__ import annotations

from typing import NamedTuple

from llmport.errors import UnsupportedOption

START = "<think>"
END = "</think>"


class ReasoningSplit(NamedTuple):
    reasoning: str
    content: str


class ReasoningParser:
    """One instance per answer (it keeps the streaming state)."""

    #: The answer starts inside the reasoning even when it does not write ``<think>``.
    opens_in_reasoning = False

    def __init__(self) -> None:
        self._text = ""
        self._num_reasoning = 0
        self._num_content = 0

    def parse(self, text: str) -> ReasoningSplit:
        """The whole answer's reasoning and content."""
        return self._split(text, final=True)

    def feed(self, delta: str) -> ReasoningSplit:
        """What is new of the reasoning and of the content since the last feed."""
        self._text += delta
        return self._take(self._split(self._text, final=False))

    def finish(self) -> ReasoningSplit:
        """The rest, once the answer has ended."""
        return self._take(self._split(self._text, final=True))

    @property
    def is_reasoning(self) -> bool:
        """Still inside the reasoning (or not yet known): a grammar waits for its end."""
        return not self._num_content and END not in self._text

    def _take(self, split: ReasoningSplit) -> ReasoningSplit:
        new = ReasoningSplit(
            split.reasoning[self._num_reasoning :], split.content[self._num_content :]
        )
        self._num_reasoning = max(self._num_reasoning, len(split.reasoning))
        self._num_content = max(self._num_content, len(split.content))
        return new

    def _split(self, text: str, final: bool) -> ReasoningSplit:
        opening = text.lstrip()
        if opening.startswith(START):
            body = len(text) - len(opening) + len(START)
        elif not final and START.startswith(opening):
            return ReasoningSplit("", "")  # Could still open with <think>.
        elif self.opens_in_reasoning:
            body = 0
        else:
            return ReasoningSplit("", text)
        end = text.find(END, body)
        if end < 0:
            held = 0 if final else _partial_suffix(text, END)
            return ReasoningSplit(text[body : len(text) - held], "")
        content = text[end + len(END) :].lstrip()
        return ReasoningSplit(text[body:end], content)


class DeepSeekR1Parser(ReasoningParser):
    opens_in_reasoning = True


class Qwen3Parser(ReasoningParser):
    opens_in_reasoning = False


PARSERS: dict[str, type[ReasoningParser]] = {
    "deepseek_r1": DeepSeekR1Parser,
    "qwen3": Qwen3Parser,
}


def reasoning_parser(name: str) -> ReasoningParser:
    try:
        return PARSERS[name]()
    except KeyError:
        raise UnsupportedOption(
            f"reasoning parser {name!r}: choose one of {', '.join(PARSERS)}"
        ) from None


def parser_for_template(template: str | None) -> str | None:
    """The parser a chat template implies, when it is unambiguous: a template that writes
    ``<think>`` and takes ``enable_thinking`` is Qwen3's; one that writes ``<think>``
    without it, DeepSeek-R1's; anything else, none."""
    if not template or START not in template:
        return None
    return "qwen3" if "enable_thinking" in template else "deepseek_r1"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
