"""Continuous batching: which tokens of which sequences go into the next decode.

Every step packs one decode token per running sequence first (streams never
stall), then fills the rest of the token budget with prefill chunks of
waiting prompts. When KV cells run short the scheduler evicts cached
prefixes, then preempts the newest running sequence (recomputed later).

A plan fits the KV estimate by construction, so the forward pass never re-plans.
Should llama.cpp refuse one anyway, ``refuse`` records it and the next
``schedule`` frees KV before planning (``_relieve_refused``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

from llmport.engines.batching.backend import KvCacheFull
from llmport.engines.batching.kv import KvPolicy
from llmport.engines.batching.prefix_cache import PrefixCache, PrefixMatch, common_prefix_len
from llmport.engines.batching.sequence import Sequence, SequenceStatus
from llmport.types import FinishReason

#: A waiting prompt that shares at least this many tokens with a prompt still being
#: prefilled waits for that prefill and copies its KV instead of computing it again.
MIN_SHARED_PREFILL = 32


class ScheduledChunk(NamedTuple):
    """Compute ``num_tokens`` tokens of ``seq`` from position ``start``."""

    seq: Sequence
    start: int
    num_tokens: int

    @property
    def reaches_end(self) -> bool:
        """The chunk computes the sequence's last token, so a sample follows."""
        return self.start + self.num_tokens == len(self.seq)


class Scheduler:
    """Owns the waiting and running queues, the KV slots and the prefix cache.

    What fits where is the KV policy's to say (``kv``): the scheduler books each chunk
    with it and never counts cells itself.
    """

    def __init__(
        self,
        kv: KvPolicy,
        prefix_cache: PrefixCache,
        max_num_seqs: int,
        max_num_batched_tokens: int,
    ) -> None:
        self.kv = kv
        self.prefix_cache = prefix_cache
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._num_preempted = 0
        self._refused: list[ScheduledChunk] = []
        # This step's prefills that waiting prompts share: where each leader's chunk
        # stops (so its KV holds exactly the shared part when a follower copies it), and
        # the followers that wait for it.
        self._share_points: dict[int, list[int]] = {}
        self._followers: set[int] = set()

    @property
    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    # -- scheduling ------------------------------------------------------------

    def schedule(self) -> list[ScheduledChunk]:
        """Plan one step that fits the KV estimate.

        Mutates slots (admission, eviction, preemption), not token counts. After a
        refused plan it first frees KV (``_relieve_refused``); it raises KvCacheFull
        only when nothing is left to free.
        """
        if self._refused:
            self._relieve_refused()
        chunks: list[ScheduledChunk] = []
        if not self.running:
            self._num_preempted = 0  # nothing left to thrash against
        self.kv.begin_plan()
        self._find_shared_prefills()
        budget = self._schedule_running(chunks, self.max_num_batched_tokens)
        self._schedule_waiting(chunks, budget)
        # Slot order: llama.cpp batches consecutive per-sequence streams together.
        chunks.sort(key=lambda chunk: -1 if chunk.seq.slot is None else chunk.seq.slot)
        return chunks

    def _schedule_running(self, chunks: list[ScheduledChunk], budget: int) -> int:
        """Plan the running sequences' next tokens; returns the budget left."""
        # Decodes before prefill chunks: a long prompt never delays a stream's next token.
        for seq in sorted(self.running, key=lambda s: s.num_uncomputed_tokens > 1):
            if seq.status is not SequenceStatus.RUNNING or budget == 0:
                continue
            num_tokens = min(seq.num_uncomputed_tokens, budget)
            for point in self._share_points.get(seq.seq_id, ()):
                if point > seq.num_computed_tokens:
                    num_tokens = min(num_tokens, point - seq.num_computed_tokens)
                    break
            if not self._make_room(num_tokens, chunks, seq):
                continue
            self._book(chunks, seq, num_tokens)
            budget -= num_tokens
        return budget

    def _schedule_waiting(self, chunks: list[ScheduledChunk], budget: int) -> None:
        """Admit waiting sequences into what the budget and the free cells leave."""
        deferred: list[Sequence] = []
        while self._can_admit_more(budget):
            seq = self.waiting[0]
            if seq.seq_id in self._followers or self._has_prefilling_sibling(seq):
                deferred.append(self.waiting.popleft())
                continue
            if not self._admit(seq):
                break
            self.waiting.popleft()
            assert seq.slot is not None
            room = self.kv.room(seq.slot)
            if room < 1:
                # Evicting a prefix for its slot left the prefix's borrowers counting its
                # cells twice (an overestimate): this one's prefill starts next step.
                break
            num_tokens = min(seq.num_uncomputed_tokens, budget, room)
            self._book(chunks, seq, num_tokens)
            budget -= num_tokens
        self.waiting.extendleft(reversed(deferred))

    def _book(self, chunks: list[ScheduledChunk], seq: Sequence, num_tokens: int) -> None:
        assert seq.slot is not None
        self.kv.plan(seq.slot, num_tokens)
        chunks.append(ScheduledChunk(seq, seq.num_computed_tokens, num_tokens))

    def _find_shared_prefills(self) -> None:
        """Which waiting prompts (those that could start soon) share a long prefix with a
        prompt still being prefilled, and where that prefill should pause for them.

        Sixteen chats with one system prompt then prefill it once, not sixteen times; the
        pause matters for sliding-window layers, which keep only the last window of a
        sequence, so the shared part is copied before the leader moves past it.
        """
        self._share_points.clear()
        self._followers.clear()
        leaders = [s for s in self.running if s.num_computed_tokens < s.num_prompt_tokens]
        if not leaders:
            return
        for seq in list(self.waiting)[: self.max_num_seqs]:
            query = seq.prompt_array[:-1]
            for leader in leaders:
                shared = common_prefix_len(query, leader.prompt_array)
                if shared >= MIN_SHARED_PREFILL and shared > leader.num_computed_tokens:
                    self._followers.add(seq.seq_id)
                    self._share_points.setdefault(leader.seq_id, []).append(shared)
                    break
        for points in self._share_points.values():
            points.sort()

    def _has_prefilling_sibling(self, seq: Sequence) -> bool:
        """Choices of one request (n > 1) wait for the first one's prefill, then share
        its prompt KV through the prefix cache instead of prefilling it n times."""
        return any(
            s.request_id == seq.request_id and s.num_computed_tokens < s.num_prompt_tokens
            for s in self.running
        )

    def _can_admit_more(self, budget: int) -> bool:
        # A step that had to preempt admits nothing: it would thrash.
        return (
            bool(self.waiting)
            and budget > 0
            and len(self.running) < self.max_num_seqs
            and self._num_preempted == 0
        )

    def _make_room(self, num_tokens: int, chunks: list[ScheduledChunk], seq: Sequence) -> bool:
        """Evict cached prefixes, then preempt the newest unscheduled sequences, until
        ``num_tokens`` more of ``seq`` fit. False (and ``seq`` preempted) if even that is
        not enough."""
        assert seq.slot is not None
        while not self.kv.can_append(seq.slot, num_tokens):
            if self.prefix_cache.evict_one():
                continue
            scheduled = {chunk.seq.seq_id for chunk in chunks}
            victim = next((s for s in reversed(self.running) if s.seq_id not in scheduled), None)
            if victim is None:
                return False
            self.preempt(victim)
            if victim is seq:
                return False
        return True

    def _admit(self, seq: Sequence) -> bool:
        """Give a waiting sequence a slot, reusing the longest cached prefix of its tokens."""
        match = self.prefix_cache.find(
            seq.token_ids[:-1],
            [(s.slot, s.computed_token_ids()) for s in self.running if s.slot is not None],
        )
        reused = match.num_tokens if match else 0
        keep = match.slot if match else None
        is_cached = match is not None and match.slot in self.prefix_cache.slots
        while not self.kv.can_allocate() and self.prefix_cache.evict_one(
            keep=keep, where=self.kv.can_run_in
        ):
            pass
        if self.kv.can_allocate():
            place, match = self._place(match)
            slot = self.kv.allocate(place)
            assert slot is not None
            if match is not None:
                self.kv.share_prefix(match.slot, slot, reused)
                if not is_cached:
                    self._keep_prefix(match.slot, seq.token_ids[:reused])
        elif (
            match is not None
            and is_cached
            and self.kv.can_run_in(match.slot)
            and self.kv.room() >= 1
        ):
            # No slot left but the cached entry itself: the sequence takes it over.
            self.prefix_cache.take(match.slot)
            self.kv.truncate(match.slot, reused)
            slot = match.slot
        else:
            return False
        self._start(seq, slot, reused)
        return True

    def _place(self, match: PrefixMatch | None) -> tuple[int | None, PrefixMatch | None]:
        """Where a new sequence should run (None: the policy's lowest free slot), and the
        prefix match, moved if its entry had to make way.

        Per-sequence streams: llama.cpp batches only consecutive slots together, so after
        chats finish out of order, new ones placed by chance in slots 1, 3, 5... would
        cost a forward pass each per step. The new sequence takes the slot with the most
        running neighbours (a free one on a tie, then the lowest); a cached prefix held
        there first moves to the highest free slot: a stream copy, not a prefill.
        """
        if not self.kv.packs_slots:
            return None, match
        free = self.kv.free_run_slots
        cached = [slot for slot in self.prefix_cache.slots if self.kv.can_run_in(slot)]
        running = {seq.slot for seq in self.running}

        def cost(slot: int) -> tuple[int, bool, int]:
            neighbours = (slot - 1 in running) + (slot + 1 in running)
            return -neighbours, slot not in free, slot

        place = min([*free, *cached], key=cost)
        if place in free:
            return place, match
        self.prefix_cache.move(place, free[-1])
        if match is not None and match.slot == place:
            match = PrefixMatch(free[-1], match.num_tokens)
        return place, match

    def _keep_prefix(self, src: int, token_ids: list[int]) -> None:
        """Copy a prefix that a new prompt shares with a running one into a spare slot, as
        a cached entry of its own.

        Chats with one system prompt then find it after they finish: their own slots
        cannot give it back on a sliding-window model, whose window layers keep only the
        last positions of a sequence, long past the shared part. A spare slot held by an
        older such copy is reused; the running slots are never taken.
        """
        cache = self.prefix_cache
        if not cache.max_num_entries or len(token_ids) < MIN_SHARED_PREFILL:
            return
        if cache.covers(token_ids):
            return
        slot = self.kv.allocate_spare()
        if slot is None and cache.evict_one(where=self.kv.is_spare):
            slot = self.kv.allocate_spare()
        if slot is not None:
            self.kv.share_prefix(src, slot, len(token_ids))
            cache.insert(slot, token_ids)

    def _start(self, seq: Sequence, slot: int, num_reused: int) -> None:
        if seq.is_first_output:
            seq.num_cached_tokens = min(num_reused, seq.num_prompt_tokens)
        if seq.timings.first_scheduled is None:
            seq.timings.first_scheduled = time.monotonic()
        seq.slot = slot
        seq.num_computed_tokens = num_reused
        seq.status = SequenceStatus.RUNNING
        self.running.append(seq)

    # -- after the forward pass ------------------------------------------------

    def commit(self, chunks: list[ScheduledChunk]) -> None:
        """Record that the chunks' tokens now have KV."""
        # Preemptions are counted from one committed step to the next, so a batch
        # llama.cpp refused is re-planned without re-admitting what was preempted for it.
        self._num_preempted = 0
        for chunk in chunks:
            if chunk.seq.slot is not None:
                self.kv.append(chunk.seq.slot, chunk.num_tokens)
            chunk.seq.num_computed_tokens += chunk.num_tokens

    def refuse(self, chunks: list[ScheduledChunk]) -> None:
        """llama.cpp refused the plan (KvCacheFull): nothing was computed, nothing changed.
        The next ``schedule`` frees KV before it plans again."""
        self._refused = chunks

    def _relieve_refused(self) -> None:
        """Free KV for the plan llama.cpp refused: the least recently used cached prefix,
        else the plan's newest running sequence, preempted to be recomputed.

        The estimate never counts fewer cells than llama.cpp uses, so a refusal means
        llama.cpp's own room is tighter (SWA windows, padding, a fragmented unified
        cache). Retries end: each drops a cached prefix or a running sequence, and no
        sequence is admitted after a preemption until a plan runs. A plan of one
        sequence with no cached prefix left cannot shrink: KvCacheFull.
        """
        refused, self._refused = self._refused, []
        if self.prefix_cache.evict_one():
            return
        if any(c.seq.status is not SequenceStatus.RUNNING for c in refused):
            return  # one was aborted since the refusal: its cells are free now
        if len(refused) == 1:
            raise KvCacheFull(
                f"llama.cpp has no room for {refused[0].num_tokens} tokens of the only "
                "sequence in the step, and no cached prefix is left to evict"
            )
        newest = max(refused, key=lambda c: self.running.index(c.seq))  # all RUNNING here
        self.preempt(newest.seq)

    def preempt(self, seq: Sequence) -> None:
        """Drop the sequence's KV and requeue it first; its tokens are recomputed later."""
        self.running.remove(seq)
        if seq.slot is not None:
            self.kv.free(seq.slot)
        seq.slot = None
        seq.num_computed_tokens = 0
        self._num_preempted += 1
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """End the sequence; its computed KV becomes a reusable cached prefix."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        if seq.slot is not None:
            self.prefix_cache.insert(seq.slot, seq.computed_token_ids())
            seq.slot = None
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def find(self, request_id: str) -> list[Sequence]:
        return [s for s in (*self.running, *self.waiting) if s.request_id == request_id]
