"""The engine kinds this installation offers (composition: the server, ``llm.py`` and
the worker build their registry here; the manager is handed one)."""

from __future__ import annotations

from llmport.engine.llama_cpp_kind import LLAMA_CPP
from llmport.engine.registry import EngineRegistry


def default_registry() -> EngineRegistry:
    return EngineRegistry([LLAMA_CPP])
