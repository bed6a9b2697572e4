"""The engine kinds this installation offers (composition: the server, ``llm.py`` and
the worker build their registry here; the manager is handed one)."""

from __future__ import annotations

from llmport.engine.registry import EngineRegistry
from llmport.engines.llama_cpp.kind import LLAMA_CPP
from llmport.engines.vllm.kind import VLLM


def default_registry() -> EngineRegistry:
    """llama.cpp serves GGUF files, vLLM Hugging Face folders (where it is installed)."""
    return EngineRegistry([LLAMA_CPP, VLLM])
