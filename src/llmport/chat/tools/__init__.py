"""Tool-call parsers, one module per model family's output format (vLLM's names)."""

from __future__ import annotations

from llmport.chat.tools.base import ToolCall, ToolParser
from llmport.chat.tools.hermes import HermesParser
from llmport.chat.tools.llama3_json import Llama3JsonParser
from llmport.chat.tools.mistral import MistralParser
from llmport.chat.tools.pythonic import PythonicParser
from llmport.errors import UnsupportedOption

PARSERS: dict[str, type[ToolParser]] = {
    "hermes": HermesParser,
    "llama3_json": Llama3JsonParser,
    "mistral": MistralParser,
    "pythonic": PythonicParser,
}


def tool_parser(name: str) -> ToolParser:
    try:
        return PARSERS[name]()
    except KeyError:
        raise UnsupportedOption(
            f"tool call parser {name!r}: choose one of {', '.join(PARSERS)}"
        ) from None


__all__ = ["PARSERS", "ToolCall", "ToolParser", "tool_parser"]
