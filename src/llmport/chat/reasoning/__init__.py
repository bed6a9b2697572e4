"""Reasoning parsers: the thinking a model writes before its answer, told apart from it
(vLLM's ``--reasoning-parser`` names)."""

from __future__ import annotations

from llmport.chat.reasoning.think import (
    PARSERS,
    ReasoningParser,
    ReasoningSplit,
    parser_for_template,
    reasoning_parser,
)

__all__ = [
    "PARSERS",
    "ReasoningParser",
    "ReasoningSplit",
    "parser_for_template",
    "reasoning_parser",
]
