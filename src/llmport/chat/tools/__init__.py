"""Tool-call parsers, one module per model family's output format (vLLM's names)."""

from __future__ import annotations

from typing import Any

from llmport.chat.structured import check_schema_size
from llmport.chat.tools.base import MAX_NUM_CALLS, ToolCall, ToolParser
from llmport.chat.tools.hermes import HermesParser
from llmport.chat.tools.llama3_json import Llama3JsonParser
from llmport.chat.tools.mistral import MistralParser
from llmport.chat.tools.pythonic import PythonicParser
from llmport.errors import InvalidParameter, UnsupportedOption

PARSERS: dict[str, type[ToolParser]] = {
    "hermes": HermesParser,
    "llama3_json": Llama3JsonParser,
    "mistral": MistralParser,
    "pythonic": PythonicParser,
}


def tool_parser(name: str, parallel: bool = True) -> ToolParser:
    """A fresh parser (one per answer); ``parallel`` False allows one call only."""
    try:
        return PARSERS[name](MAX_NUM_CALLS if parallel else 1)
    except KeyError:
        raise UnsupportedOption(
            f"tool call parser {name!r}: choose one of {', '.join(PARSERS)}"
        ) from None


def tool_choice_grammar(
    parser: ToolParser, tools: list[dict[str, Any]], choice: str | dict[str, Any] | None
) -> str | None:
    """OpenAI's ``tool_choice``: ``required`` or a named function forces calls by grammar;
    ``auto``/``none``/unset leave the model free."""
    if choice in (None, "auto", "none"):
        return None
    check_schema_size(tools, "tools")
    names = [_function(tool)["name"] for tool in tools]
    if choice == "required":
        return parser.call_grammar(tools, None)
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            raise InvalidParameter(
                f"tool_choice names {name!r}, which is not among the tools {names}",
                param="tool_choice",
            )
        return parser.call_grammar(tools, name)
    raise InvalidParameter(
        f"tool_choice must be auto, none, required or a function, not {choice!r}",
        param="tool_choice",
    )


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool's function definition (OpenAI nests it under ``function``), checked to be an
    object with a name before a grammar is built from it."""
    function = tool.get("function", tool)
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidParameter("each tool needs a function object with a name", param="tools")
    return function


__all__ = ["PARSERS", "ToolCall", "ToolParser", "tool_choice_grammar", "tool_parser"]
