"""KV policies: how the scheduler's slots map onto llama.cpp's cache layout."""

from llmport.engines.batching.backend import Backend
from llmport.engines.batching.kv.base import KvPolicy
from llmport.engines.batching.kv.per_seq import PerSeqKv
from llmport.engines.batching.kv.unified import UnifiedKv

__all__ = ["KvPolicy", "PerSeqKv", "UnifiedKv", "kv_policy_for"]


def kv_policy_for(backend: Backend, max_num_seqs: int | None = None) -> KvPolicy:
    """The policy matching the layout the backend's cache was built with; per sequence,
    sequences run in the first ``max_num_seqs`` streams and the others are spare."""
    if backend.kv_layout == "per_seq":
        return PerSeqKv(backend, max_num_seqs)
    return UnifiedKv(backend)
