"""The Scheduler (UnifiedKv + PrefixCache) as EngineCore drives it, over the fake backend.

``Harness.step`` calls ``EngineCore.step`` (schedule, execute, update) with a recording
scheduler injected, and checks every plan as it is made and the KV after every step:
every running sequence's slot holds exactly its computed tokens, every cached prefix
its recorded tokens, and no slot holds anything else.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from fake_backend import FakeBackend, reference_output

from llmport.config import EngineConfig
from llmport.engines.batching.backend import KvCacheFull
from llmport.engines.batching.core import EngineCore
from llmport.engines.batching.kv import KvPolicy, kv_policy_for
from llmport.engines.batching.prefix_cache import PrefixCache
from llmport.engines.batching.scheduler import ScheduledChunk, Scheduler
from llmport.engines.batching.sequence import Sequence, SequenceStatus
from llmport.types import FinishReason, Request, SamplingParams


class RecordingScheduler(Scheduler):
    """Checks each plan as it is made, records the plans that ran (``steps``) and each
    preemption with the running queue (and cache size) just before."""

    def __init__(
        self,
        kv: KvPolicy,
        prefix_cache: PrefixCache,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        check_plan: Callable[[list[ScheduledChunk]], None],
    ) -> None:
        super().__init__(kv, prefix_cache, max_num_seqs, max_num_batched_tokens)
        self.check_plan = check_plan
        self.steps: list[list[ScheduledChunk]] = []
        self.preemptions: list[tuple[Sequence, list[Sequence]]] = []
        self.num_cached_at_preemption: list[int] = []

    def schedule(self) -> list[ScheduledChunk]:
        chunks = super().schedule()
        self.check_plan(chunks)
        return chunks

    def commit(self, chunks: list[ScheduledChunk]) -> None:
        self.steps.append(chunks)
        super().commit(chunks)

    def preempt(self, seq: Sequence) -> None:
        self.preemptions.append((seq, list(self.running)))
        self.num_cached_at_preemption.append(len(self.prefix_cache))
        super().preempt(seq)


class Harness:
    def __init__(
        self,
        num_kv_tokens: int | None = None,
        num_slots: int = 8,
        max_num_seqs: int = 4,
        max_num_batched_tokens: int = 32,
        max_num_entries: int | None = None,
        num_real_cells: int | None = None,
        check_decodes_first: bool = True,
        kv_layout: str = "unified",
        sliding_window: int | None = None,
    ) -> None:
        self.check_decodes_first = check_decodes_first
        self.has_exact_cells = num_real_cells is None
        if num_kv_tokens is None:  # per sequence: streams of 64 tokens
            num_kv_tokens = 256 if kv_layout == "unified" else 64 * num_slots
        self.backend = FakeBackend(
            num_kv_tokens=num_kv_tokens,
            num_slots=num_slots,
            max_num_batched_tokens=max_num_batched_tokens,
            num_real_cells=num_real_cells,
            kv_layout=kv_layout,
            sliding_window=sliding_window,
        )
        self.kv = kv_policy_for(self.backend, max_num_seqs)
        if max_num_entries is None:
            max_num_entries = self.kv.num_cache_slots(max_num_seqs)
        self.prefix_cache = PrefixCache(self.kv, max_num_entries)
        self.scheduler = RecordingScheduler(
            self.kv, self.prefix_cache, max_num_seqs, max_num_batched_tokens, self.check_plan
        )
        config = EngineConfig(max_num_seqs=max_num_seqs)
        self.engine = EngineCore(self.backend, config, scheduler=self.scheduler)
        self.seqs: list[Sequence] = []
        self.steps = self.scheduler.steps
        self._decoding_ids: set[int] = set()
        self._num_requests = 0

    def add(self, prompt: list[int], max_tokens: int) -> Sequence:
        self._num_requests += 1
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        request_id = f"req-{self._num_requests}"
        self.engine.add_request(
            Request(request_id=request_id, prompt_token_ids=prompt, params=params)
        )
        seq = self.scheduler.waiting[-1]
        assert seq.request_id == request_id
        self.seqs.append(seq)
        return seq

    def abort(self, seq: Sequence) -> None:
        self.engine.abort_request(seq.request_id)

    # -- one engine step ---------------------------------------------------------

    def step(self) -> list[ScheduledChunk]:
        """One ``EngineCore.step``; the plan that ran ([] when llama.cpp refused it)."""
        self._decoding_ids = {
            s.seq_id for s in self.scheduler.running if s.num_uncomputed_tokens == 1
        }
        num_steps = len(self.steps)
        self.engine.step()
        self.check_state()
        return self.steps[-1] if len(self.steps) > num_steps else []

    def run(self, max_num_steps: int = 5_000) -> None:
        for _ in range(max_num_steps):
            if not self.scheduler.has_unfinished:
                return
            self.step()
        raise AssertionError(f"still unfinished after {max_num_steps} steps")

    # -- invariants --------------------------------------------------------------

    def check_plan(self, chunks: list[ScheduledChunk]) -> None:
        scheduler = self.scheduler
        assert sum(c.num_tokens for c in chunks) <= scheduler.max_num_batched_tokens
        assert len(scheduler.running) <= scheduler.max_num_seqs
        assert len({c.seq.seq_id for c in chunks}) == len(chunks)
        if self.has_exact_cells and self.backend.kv_layout == "unified":
            # The fake's cells are as many as it advertises: a plan must fit them.
            assert sum(c.num_tokens for c in chunks) <= self.backend.num_free_cells
        if self.backend.kv_layout == "per_seq":
            for chunk in chunks:
                assert chunk.start + chunk.num_tokens <= self.backend.stream_size
        for chunk in chunks:
            assert chunk.seq.status is SequenceStatus.RUNNING
            assert chunk.num_tokens >= 1
            assert chunk.start == chunk.seq.num_computed_tokens
            assert chunk.start + chunk.num_tokens <= len(chunk.seq)
        if self.check_decodes_first:
            self.check_decodes_come_first(chunks)

    def check_decodes_come_first(self, chunks: list[ScheduledChunk]) -> None:
        """Every sequence that was decoding and still runs gets its token (streams never
        stall): decodes take the budget before any prefill chunk."""
        scheduler = self.scheduler
        decoding = [s for s in scheduler.running if s.seq_id in self._decoding_ids]
        if len(decoding) <= scheduler.max_num_batched_tokens:
            scheduled = {c.seq.seq_id for c in chunks}
            assert all(s.seq_id in scheduled for s in decoding), "a decode stalled"

    def check_state(self) -> None:
        scheduler, backend = self.scheduler, self.backend
        owners: dict[int, list[int]] = {}
        for seq in scheduler.running:
            assert seq.status is SequenceStatus.RUNNING and seq.slot is not None
            assert self.kv.num_tokens(seq.slot) == seq.num_computed_tokens
            owners[seq.slot] = seq.computed_token_ids()
        for seq in scheduler.waiting:
            assert seq.status is SequenceStatus.WAITING and seq.slot is None
        for slot in self.prefix_cache.slots:
            assert slot not in owners, f"slot {slot} is both running and cached"
            owners[slot] = self.prefix_cache.token_ids(slot)
        for slot in range(backend.num_slots):
            backend.assert_holds(slot, owners.get(slot, []))
        assert self.kv.num_free_slots == backend.num_slots - len(owners)
        assert self.kv.num_used_cells >= backend.num_used_cells

    def check_outputs(self) -> None:
        for seq in self.seqs:
            expected = reference_output(seq.token_ids[: seq.num_prompt_tokens], seq.max_tokens)
            assert seq.is_finished
            if seq.finish_reason is FinishReason.ABORT:
                assert seq.output_token_ids == expected[: seq.num_output_tokens]
            else:
                assert seq.finish_reason is FinishReason.LENGTH
                assert seq.output_token_ids == expected

    def check_drained(self) -> None:
        assert not self.scheduler.running and not self.scheduler.waiting
        self.prefix_cache.clear()
        assert self.backend.num_used_cells == 0
        assert self.kv.num_used_cells == 0
        assert self.kv.num_free_slots == self.backend.num_slots


STALL_BUG = (
    "Scheduler.schedule walks running in admission order, so a running sequence still "
    "prefilling (its admission chunk was cut to the free cells, then the next admission "
    "evicted a cached prefix) takes the whole budget before later decodes; fix: schedule "
    "running decodes (num_uncomputed_tokens == 1) before running prefills"
)
RELIEVE_BUG = (
    "After _relieve_refused() preempts the refused plan's last sequence, schedule() resets "
    "_num_preempted and re-admits it, planning the same refused batch forever (every step "
    "is refused); fix: reset _num_preempted in commit(), not at the start of schedule()"
)


def tokens(rng: random.Random, num_tokens: int) -> list[int]:
    return [rng.randrange(256) for _ in range(num_tokens)]


def chunks_of(steps: list[list[ScheduledChunk]], seq: Sequence) -> list[ScheduledChunk]:
    return [c for chunks in steps for c in chunks if c.seq is seq]


# -- batching ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_single_sequence_generates_the_reference_tokens(layout: str) -> None:
    harness = Harness(kv_layout=layout)
    seq = harness.add([1, 2, 3, 4], max_tokens=10)
    harness.run()
    assert seq.output_token_ids == reference_output([1, 2, 3, 4], 10)
    assert len(harness.steps) == 10
    harness.check_drained()


def test_running_decodes_are_packed_before_new_prefills() -> None:
    harness = Harness(max_num_batched_tokens=16)
    rng = random.Random(0)
    first = harness.add(tokens(rng, 5), max_tokens=20)
    harness.step()
    second = harness.add(tokens(rng, 40), max_tokens=5)
    chunks = harness.step()
    assert [(c.seq, c.num_tokens) for c in chunks] == [(first, 1), (second, 15)]
    harness.run()
    harness.check_outputs()


def test_a_long_prompt_is_chunked_while_running_sequences_keep_decoding() -> None:
    harness = Harness(max_num_batched_tokens=16)
    rng = random.Random(1)
    short = [harness.add(tokens(rng, 4), max_tokens=30) for _ in range(2)]
    harness.step()
    harness.step()
    long = harness.add(tokens(rng, 100), max_tokens=3)
    prefill_steps = []
    while long.num_output_tokens == 0:
        chunks = harness.step()
        assert [c.seq for c in chunks[:2]] == short
        assert all(c.num_tokens == 1 for c in chunks[:2])
        prefill_steps.append(chunks[2].num_tokens)
    assert prefill_steps == [14] * 7 + [2]
    harness.run()
    harness.check_outputs()
    harness.check_drained()


def test_a_prefill_cut_short_by_cells_does_not_stall_a_later_decode() -> None:
    rng = random.Random(11)
    harness = Harness(num_kv_tokens=64, num_slots=4, max_num_seqs=2, max_num_batched_tokens=16)
    harness.add(tokens(rng, 58), max_tokens=2)
    harness.run()  # a cached prefix of 59 cells leaves 5 free
    long = harness.add(tokens(rng, 30), max_tokens=4)
    short = harness.add(tokens(rng, 3), max_tokens=4)
    chunks = harness.step()
    # The long prompt gets the 5 free cells; the short one then evicts the cached prefix.
    assert {c.seq: c.num_tokens for c in chunks} == {long: 5, short: 3}
    chunks = harness.step()  # check_plan: the short sequence must get its decode token
    assert {c.seq: c.num_tokens for c in chunks} == {short: 1, long: 15}


def test_the_token_budget_and_max_num_seqs_are_never_exceeded() -> None:
    harness = Harness(num_slots=6, max_num_seqs=3, max_num_batched_tokens=8)
    rng = random.Random(2)
    for _ in range(8):
        harness.add(tokens(rng, rng.randint(1, 20)), max_tokens=rng.randint(1, 10))
    harness.run()  # check_plan asserts both limits on every planned batch
    assert max(len({c.seq.seq_id for c in chunks}) for chunks in harness.steps) == 3
    assert max(sum(c.num_tokens for c in chunks) for chunks in harness.steps) == 8
    harness.check_outputs()
    harness.check_drained()


# -- preemption ----------------------------------------------------------------------


def test_preemption_takes_the_newest_and_recomputes_the_same_tokens() -> None:
    rng = random.Random(3)
    prompts = [tokens(rng, 12) for _ in range(3)]
    harness = Harness(num_kv_tokens=48, max_num_batched_tokens=48, max_num_entries=0)
    seqs = [harness.add(prompt, max_tokens=20) for prompt in prompts]
    harness.run()
    preemptions = harness.scheduler.preemptions
    assert preemptions
    for victim, running in preemptions:
        assert victim is running[-1]
    assert seqs[-1] in [victim for victim, _ in preemptions]
    assert seqs[0] not in [victim for victim, _ in preemptions]
    for seq, prompt in zip(seqs, prompts, strict=True):
        assert seq.output_token_ids == reference_output(prompt, 20)
    harness.check_drained()

    roomy = Harness(num_kv_tokens=1024, max_num_batched_tokens=48)
    for prompt in prompts:
        roomy.add(prompt, max_tokens=20)
    roomy.run()
    assert not roomy.scheduler.preemptions
    assert [s.output_token_ids for s in roomy.seqs] == [s.output_token_ids for s in seqs]


def test_cached_prefixes_are_evicted_before_anything_is_preempted() -> None:
    rng = random.Random(4)
    harness = Harness(num_kv_tokens=64, num_slots=8, max_num_seqs=2)
    for _ in range(4):
        harness.add(tokens(rng, 10), max_tokens=2)
    harness.run()
    assert len(harness.prefix_cache) == 4  # 44 of 64 cells
    for _ in range(2):
        harness.add(tokens(rng, 10), max_tokens=30)
    harness.run()
    assert harness.scheduler.preemptions
    assert harness.scheduler.num_cached_at_preemption == [0] * len(harness.scheduler.preemptions)
    harness.check_outputs()
    harness.check_drained()


def test_a_refused_batch_is_relieved_and_still_completes() -> None:
    """llama.cpp may refuse a batch the estimate allowed (SWA cells, padding): the
    scheduler must shrink the batch, not plan the same one again forever."""
    rng = random.Random(5)
    prompts = [tokens(rng, 10) for _ in range(3)]
    harness = Harness(num_kv_tokens=96, num_real_cells=60, max_num_batched_tokens=32)
    for prompt in prompts:
        harness.add(prompt, max_tokens=12)
    harness.run()
    assert harness.backend.num_refused > 0
    harness.check_outputs()
    harness.check_drained()


def test_a_refused_plan_changes_nothing_and_the_next_schedule_preempts() -> None:
    """The forward pass never re-plans: the refused step emits nothing, and the next
    schedule preempts the refused plan's last sequence before it plans."""
    rng = random.Random(12)
    harness = Harness(num_kv_tokens=96, num_real_cells=60, max_num_batched_tokens=64)
    first = harness.add(tokens(rng, 40), max_tokens=3)
    second = harness.add(tokens(rng, 30), max_tokens=3)
    assert harness.step() == []  # 40 + 24 tokens fit the estimate, not the 60 real cells
    assert harness.backend.num_refused == 1
    assert first.num_computed_tokens == second.num_computed_tokens == 0
    assert not harness.scheduler.preemptions
    chunks = harness.step()
    assert harness.scheduler.preemptions == [(second, [first, second])]
    assert [(c.seq, c.num_tokens) for c in chunks] == [(first, 40)]
    harness.run()
    harness.check_outputs()
    harness.check_drained()


def test_an_abort_after_a_refused_plan_frees_what_the_next_plan_needs() -> None:
    rng = random.Random(12)
    harness = Harness(num_kv_tokens=96, num_real_cells=60, max_num_batched_tokens=64)
    first = harness.add(tokens(rng, 40), max_tokens=3)
    second = harness.add(tokens(rng, 30), max_tokens=3)
    assert harness.step() == []
    harness.abort(second)
    chunks = harness.step()
    assert [(c.seq, c.num_tokens) for c in chunks] == [(first, 40)]
    assert not harness.scheduler.preemptions
    harness.run()
    harness.check_outputs()
    harness.check_drained()


def test_a_refused_lone_sequence_with_nothing_to_evict_raises() -> None:
    harness = Harness(num_real_cells=10)
    harness.add(list(range(20)), max_tokens=3)
    assert harness.step() == []
    with pytest.raises(KvCacheFull, match="20 tokens"):
        harness.step()


# -- prefix reuse --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_a_shared_prefix_with_a_finished_sequence_is_not_recomputed(layout: str) -> None:
    rng = random.Random(6)
    harness = Harness(kv_layout=layout)
    first = harness.add(tokens(rng, 40), max_tokens=4)
    harness.run()
    assert first.num_cached_tokens == 0

    second = harness.add(first.token_ids[:30] + tokens(rng, 10), max_tokens=4)
    harness.run()
    assert second.num_cached_tokens == 30
    computed = chunks_of(harness.steps, second)
    assert computed[0].start == 30
    assert sum(c.num_tokens for c in computed) == 10 + 3

    # A prompt that continues a finished conversation reuses its outputs too (all
    # but the last, which was sampled and never fed back).
    third = harness.add([*first.token_ids, 7, 7], max_tokens=2)
    harness.run()
    assert third.num_cached_tokens == 43

    # The very same prompt again: everything but the last token, which must be
    # computed to get logits.
    fourth = harness.add(first.token_ids[:40], max_tokens=4)
    harness.run()
    assert fourth.num_cached_tokens == 39
    assert fourth.output_token_ids == first.output_token_ids
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_prompts_that_arrive_together_prefill_their_shared_prefix_once(layout: str) -> None:
    """Chats with one system prompt sent at once: the first prefills it, pausing at its
    end; the others wait, copy it, and prefill only their own part."""
    rng = random.Random(13)
    harness = Harness(max_num_batched_tokens=32, max_num_seqs=6, kv_layout=layout)
    system = tokens(rng, 40)
    chats = [harness.add([*system, *tokens(rng, 8)], max_tokens=3) for _ in range(5)]
    harness.run()
    computed = sum(c.num_tokens for chunks in harness.steps for c in chunks)
    # 40 shared + 5 x 8 own prompt tokens, and 2 fed-back outputs each (3 sampled).
    assert computed == 40 + 5 * 8 + 5 * 2
    assert [c.num_cached_tokens for c in chats] == [0, 40, 40, 40, 40]
    first_chunks = chunks_of(harness.steps, chats[0])
    assert (
        first_chunks[0].num_tokens == 32
        and first_chunks[1].start + first_chunks[1].num_tokens == 40
    )
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_a_prefix_chats_sent_together_share_is_kept_for_later_chats(layout: str) -> None:
    """On a sliding-window model a finished chat's slot has moved past the system prompt;
    the copy kept in a spare slot while the first chats shared it serves the next ones.
    Per sequence, chats run only in the first max_num_seqs streams: one dense range."""
    rng = random.Random(14)
    harness = Harness(
        num_slots=9,
        max_num_seqs=4,
        max_num_batched_tokens=32,
        kv_layout=layout,
        sliding_window=8,
    )
    system = tokens(rng, 40)
    first = [harness.add([*system, *tokens(rng, 8)], max_tokens=12) for _ in range(4)]
    harness.run()
    assert [c.num_cached_tokens for c in first] == [0, 40, 40, 40]
    later = [harness.add([*system, *tokens(rng, 8)], max_tokens=3) for _ in range(4)]
    harness.run()
    assert [c.num_cached_tokens for c in later] == [40, 40, 40, 40]
    if layout == "per_seq":
        for batch in harness.backend.batches:
            slots = sorted(set(batch.slots.tolist()))
            assert slots == list(range(slots[0], slots[-1] + 1)) and slots[-1] < 4
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_without_a_spare_slot_nothing_is_kept_and_all_completes(layout: str) -> None:
    rng = random.Random(15)
    harness = Harness(num_slots=4, max_num_seqs=4, kv_layout=layout, sliding_window=8)
    system = tokens(rng, 40)
    chats = [harness.add([*system, *tokens(rng, 8)], max_tokens=12) for _ in range(4)]
    harness.run()
    assert [c.num_cached_tokens for c in chats] == [0, 40, 40, 40]
    if layout == "per_seq":  # The finished chats' own streams, nothing more.
        assert sorted(harness.prefix_cache.slots) == [0, 1, 2, 3]
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_a_prefix_is_shared_with_a_running_sequence(layout: str) -> None:
    rng = random.Random(7)
    harness = Harness(max_num_batched_tokens=64, kv_layout=layout)
    prompt = tokens(rng, 30)
    first = harness.add(prompt, max_tokens=10)
    harness.step()
    harness.step()
    second = harness.add(prompt[:20] + tokens(rng, 5), max_tokens=10)
    harness.step()
    assert second.num_cached_tokens == 20
    assert second.slot != first.slot
    harness.run()
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_with_no_free_slot_the_cached_slot_itself_is_taken(layout: str) -> None:
    rng = random.Random(8)
    harness = Harness(num_slots=1, max_num_seqs=1, max_num_entries=1, kv_layout=layout)
    first = harness.add(tokens(rng, 20), max_tokens=5)
    harness.run()
    assert harness.prefix_cache.slots == [0]
    second = harness.add(first.token_ids[:12] + tokens(rng, 3), max_tokens=5)
    harness.step()
    assert second.slot == 0
    assert second.num_cached_tokens == 12
    assert len(harness.prefix_cache) == 0
    harness.run()
    harness.check_outputs()
    harness.check_drained()


def test_evicting_a_prefix_two_sequences_borrow_from_plans_no_empty_chunk() -> None:
    """Freeing a cached prefix that two running sequences copied from makes the estimate
    count its cells twice; the admission that evicted it must not plan < 1 token."""
    prompt = list(range(1, 21))
    harness = Harness(
        num_kv_tokens=40, num_slots=3, max_num_seqs=3, max_num_entries=1, max_num_batched_tokens=8
    )
    harness.add(prompt, max_tokens=1)
    harness.run()
    borrowers = [harness.add([*prompt[:15], 100 + i], max_tokens=30) for i in range(2)]
    for _ in range(4):
        harness.step()
    assert all(s.num_cached_tokens == 15 for s in borrowers)
    late = harness.add([200, 201, 202, 203, 204, 205], max_tokens=3)
    chunks = harness.step()  # check_plan: every chunk computes at least one token
    assert late not in [c.seq for c in chunks]  # it waits for room: no empty chunk
    harness.run()
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_prefix_caching_off_frees_finished_slots(layout: str) -> None:
    rng = random.Random(9)
    harness = Harness(max_num_entries=0, kv_layout=layout)
    first = harness.add(tokens(rng, 20), max_tokens=3)
    harness.run()
    assert harness.backend.num_used_cells == 0
    second = harness.add(first.token_ids[:20], max_tokens=3)
    harness.run()
    assert second.num_cached_tokens == 0
    harness.check_outputs()


# -- abort ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_aborting_running_and_waiting_sequences_frees_their_queues(layout: str) -> None:
    rng = random.Random(10)
    harness = Harness(max_num_seqs=1, max_num_batched_tokens=8, kv_layout=layout)
    running = harness.add(tokens(rng, 20), max_tokens=10)
    waiting = harness.add(tokens(rng, 20), max_tokens=10)
    harness.step()
    assert running.status is SequenceStatus.RUNNING and running.num_computed_tokens == 8
    harness.abort(running)
    harness.abort(waiting)
    harness.check_state()
    assert not harness.scheduler.has_unfinished
    assert harness.prefix_cache.token_ids(harness.prefix_cache.slots[0]) == running.token_ids[:8]
    assert running.finish_reason is waiting.finish_reason is FinishReason.ABORT
    harness.check_drained()


# -- random workloads ------------------------------------------------------------------


def random_workload(seed: int, check_decodes_first: bool, layout: str = "unified") -> Harness:
    rng = random.Random(seed)
    max_num_seqs = rng.randint(1, 5)
    num_slots = max_num_seqs + rng.randint(0, 4)
    # Per sequence every stream holds the longest sequence (64 tokens here).
    num_kv_tokens = rng.choice([64, 96, 256]) if layout == "unified" else 64 * num_slots
    harness = Harness(
        num_kv_tokens=num_kv_tokens,
        num_slots=num_slots,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=rng.choice([4, 16, 64]),
        check_decodes_first=check_decodes_first,
        kv_layout=layout,
    )
    stems = [tokens(rng, rng.randint(1, 30)) for _ in range(3)]
    for _ in range(rng.randint(20, 40)):
        for _ in range(rng.choice([0, 0, 1, 2])):
            prompt = rng.choice(stems)[: rng.randint(1, 30)] + tokens(rng, rng.randint(0, 12))
            harness.add(prompt, max_tokens=rng.randint(1, 20))
        live = [*harness.scheduler.running, *harness.scheduler.waiting]
        if live and rng.random() < 0.15:
            harness.abort(rng.choice(live))
            harness.check_state()
        harness.step()
    harness.run()
    return harness


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
@pytest.mark.parametrize("seed", range(16))
def test_random_workloads_stay_consistent_and_drain(seed: int, layout: str) -> None:
    # Decode order is left to the test below (a known bug breaks it in some seeds).
    harness = random_workload(seed, check_decodes_first=False, layout=layout)
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_random_workloads_never_stall_a_decode(layout: str) -> None:
    for seed in range(16):
        random_workload(seed, check_decodes_first=True, layout=layout)


def test_per_sequence_streams_never_preempt_and_batch_in_slot_order() -> None:
    """Streams hold whole sequences: a full load runs without preemption, and every plan
    lists its slots in order (the fake refuses otherwise, as llama.cpp would split)."""
    rng = random.Random(12)
    harness = Harness(num_kv_tokens=4 * 64, num_slots=4, max_num_seqs=4, kv_layout="per_seq")
    for _ in range(12):
        harness.add(tokens(rng, rng.randint(20, 50)), max_tokens=rng.randint(5, 14))
    harness.run()
    assert not harness.scheduler.preemptions
    for batch in harness.backend.batches:
        assert list(batch.slots) == sorted(batch.slots)
    harness.check_outputs()
    harness.check_drained()


def consecutive_runs(slots: list[int]) -> int:
    """How many forward passes llama.cpp makes for a batch over these per-sequence slots."""
    ordered = sorted(set(slots))
    return 1 + sum(b != a + 1 for a, b in itertools.pairwise(ordered))


def test_per_sequence_new_sequences_join_the_running_slots_and_cached_prefixes_move() -> None:
    """Chats finished out of order leave their prefixes in scattered slots; a new sequence
    runs next to the running ones (one forward pass per step, not one per slot), and the
    prefix that held its slot moves, still reusable."""
    rng = random.Random(21)
    harness = Harness(num_kv_tokens=5 * 64, num_slots=5, max_num_seqs=4, kv_layout="per_seq")
    prompts = [tokens(rng, 20) for _ in range(4)]
    # Slots 0..3 in order; they finish 1, 3, 0, 2: the cache's LRU order.
    first = [harness.add(p, max_tokens=n) for p, n in zip(prompts, (9, 3, 12, 6), strict=True)]
    harness.run()
    assert [s.slot for s in first] == [None] * 4
    assert harness.prefix_cache.slots == [1, 3, 0, 2]

    start = len(harness.backend.batches)
    new = [harness.add(tokens(rng, 20), max_tokens=8) for _ in range(2)]
    harness.step()
    assert sorted(s.slot for s in new if s.slot is not None) == [0, 1]
    # LRU evicted 1 and 3; the prefix of the first chat (slot 0) moved to slot 3.
    assert harness.prefix_cache.slots == [3, 2]
    assert harness.prefix_cache.token_ids(3) == first[0].computed_token_ids()
    again = harness.add(prompts[0] + tokens(rng, 4), max_tokens=5)
    harness.run()
    assert again.num_cached_tokens == 20
    assert [consecutive_runs(b.slots.tolist()) for b in harness.backend.batches[start:]] == [1] * (
        len(harness.backend.batches) - start
    )
    harness.check_outputs()
    harness.check_drained()


@pytest.mark.parametrize("layout", ["unified", "per_seq"])
def test_a_few_shared_tokens_are_shared_only_where_sharing_copies_nothing(layout: str) -> None:
    """Per sequence a shared prefix costs a whole-stream copy, which the first few tokens
    of a prompt (often only <bos>) do not repay; a unified cache shares cells for free."""
    rng = random.Random(22)
    harness = Harness(kv_layout=layout)
    first = harness.add(tokens(rng, 20), max_tokens=4)
    harness.run()
    short = harness.add(first.token_ids[:5] + tokens(rng, 10), max_tokens=4)
    harness.run()
    long = harness.add(first.token_ids[:12] + tokens(rng, 10), max_tokens=4)
    harness.run()
    assert short.num_cached_tokens == (5 if layout == "unified" else 0)
    assert long.num_cached_tokens == 12
    harness.check_outputs()
    harness.check_drained()
