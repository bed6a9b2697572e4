"""One KV stream per slot (llama.cpp with ``kv_unified`` off).

Each slot owns a stream of ``num_kv_tokens / num_slots`` cells, at least the
longest sequence the engine admits, so a sequence never waits for another's
cells and is never preempted for room. A token's attention walks only its own
stream, so the cost grows with each sequence's own length, not with the sum.

Sharing a prefix copies: llama.cpp copies a whole stream (it aborts on a partial
copy), and the backend trims the copy to the prefix. Slots not running a
sequence keep finished sequences' KV as the prefix cache until a new sequence
needs the stream.

llama.cpp batches only consecutive streams' tokens together (a step over slots
1, 3 and 5 takes three forward passes), so the scheduler places a new sequence
next to the running ones (``packs_slots``), moving a cached prefix out of its way.
Sequences run in the lowest ``num_run_slots`` slots (``max_num_seqs``), so a full
load is one dense range; the slots above are spare streams that only hold prefixes
copied for the cache, where a finished sequence would have let its sliding-window
layers move past them.
"""

from __future__ import annotations

from llmport.engines.batching.backend import Backend
from llmport.engines.batching.kv.base import KvPolicy


class PerSeqKv(KvPolicy):
    layout = "per_seq"
    packs_slots = True
    min_shared_prefix = 8

    def __init__(self, backend: Backend, num_run_slots: int | None = None) -> None:
        super().__init__(backend, num_run_slots)
        self.stream_size = backend.num_kv_tokens // max(1, backend.num_slots)
        if backend.max_model_len > self.stream_size:
            raise ValueError(
                f"per-sequence streams of {self.stream_size} tokens cannot hold a "
                f"sequence of max_model_len {backend.max_model_len}"
            )

    @property
    def num_cells(self) -> int:
        return self.stream_size * self.num_slots

    @property
    def num_used_cells(self) -> int:
        return sum(self._num_tokens.values())

    def is_spare(self, slot: int) -> bool:
        return not self.can_run_in(slot)

    def num_cache_slots(self, max_num_seqs: int) -> int:
        # A stream costs its whole size: the cache lives in whichever streams are idle.
        return self.num_slots

    def room(self, slot: int | None = None) -> int:
        if slot is None:
            return self.stream_size
        return self.stream_size - self._num_tokens[slot] - self._planned.get(slot, 0)
