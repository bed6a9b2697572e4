"""The engine kinds this installation offers (composition: the server, ``llm.py`` and
the worker build their registry here; the manager is handed one)."""

from __future__ import annotations

from llmport.engine.registry import EngineRegistry
from llmport.engines.llama_cpp.kind import LLAMA_CPP


def default_registry() -> EngineRegistry:
    return EngineRegistry([LLAMA_CPP])
