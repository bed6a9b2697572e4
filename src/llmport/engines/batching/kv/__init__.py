"""KV policies: how the scheduler's slots map onto llama.cpp's cache layout."""

from llmport.engines.batching.backend import Backend
from llmport.engines.batching.kv.base import KvPolicy
from llmport.engines.batching.kv.per_seq import PerSeqKv
from llmport.engines.batching.kv.unified import UnifiedKv

__all__ = ["KvPolicy", "PerSeqKv", "UnifiedKv", "kv_policy_for"]


def kv_policy_for(backend: Backend) -> KvPolicy:
    """The policy matching the layout the backend's cache was built with."""
    return PerSeqKv(backend) if backend.kv_layout == "per_seq" else UnifiedKv(backend)
