"""llmport: one port, every model: continuous batching over llama.cpp.

``from llmport import LLM, SamplingParams``. The engine classes load lazily, so
importing llmport's types does not load llama.cpp.
"""

from typing import TYPE_CHECKING, Any

from llmport.types import SamplingParams

if TYPE_CHECKING:
    from llmport.llm import LLM, AsyncLLM, CompletionOutput, RequestOutput

__all__ = ["LLM", "AsyncLLM", "CompletionOutput", "RequestOutput", "SamplingParams"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in {"LLM", "AsyncLLM", "CompletionOutput", "RequestOutput"}:
        from llmport import llm

        return getattr(llm, name)
    raise AttributeError(f"module 'llmport' has no attribute {name!r}")
