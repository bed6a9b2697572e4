"""ModelRunner over the fake backend: how a plan becomes batches, and a refusal."""

from __future__ import annotations

from fake_backend import FakeBackend, next_token

from llmport.engines.batching.detokenizer import IncrementalDetokenizer
from llmport.engines.batching.runner import ModelRunner
from llmport.engines.batching.scheduler import ScheduledChunk
from llmport.engines.batching.sequence import Sequence
from llmport.types import SamplingParams


def seq_in_slot(slot: int, prompt: list[int], is_embedding: bool = False) -> Sequence:
    params = SamplingParams(temperature=0.0)
    seq = Sequence(
        f"req-{slot}",
        0,
        prompt,
        params,
        4,
        IncrementalDetokenizer(lambda t: b""),
        None,
        is_embedding,
    )
    seq.slot = slot
    return seq


def test_sites_are_the_rows_of_chunks_that_reach_their_end() -> None:
    backend = FakeBackend(num_slots=4)
    whole, part, other = (seq_in_slot(i, [i + 1] * 5) for i in range(3))
    plan = [ScheduledChunk(whole, 0, 5), ScheduledChunk(part, 0, 3), ScheduledChunk(other, 0, 5)]
    result = ModelRunner(backend).execute(plan)
    assert result is not None and result.hidden is None and result.embedded == []
    assert [(s.seq, s.row, s.batch_index) for s in result.sites] == [
        (whole, 0, 4),
        (other, 1, 12),
    ]
    assert backend.batches[-1].is_output.tolist() == [0] * 4 + [1] + [0] * 3 + [0] * 4 + [1]
    assert result.logits.argmax(axis=1).tolist() == [next_token([1] * 5), next_token([3] * 5)]


def test_an_embedding_requests_last_token_runs_in_a_batch_of_its_own() -> None:
    backend = FakeBackend(num_slots=4)
    gen, emb = seq_in_slot(0, [1, 2, 3]), seq_in_slot(1, [4, 5, 6], is_embedding=True)
    result = ModelRunner(backend).execute([ScheduledChunk(gen, 0, 3), ScheduledChunk(emb, 0, 3)])
    assert result is not None and result.hidden is not None
    assert [s.seq for s in result.sites] == [gen] and result.embedded == [emb]
    assert result.hidden.shape == (1, 8)
    main, final = backend.batches
    assert main.token_ids.tolist() == [1, 2, 3, 4, 5] and main.is_output.tolist() == [0, 0, 1, 0, 0]
    assert final.token_ids.tolist() == [6] and final.positions.tolist() == [2]
    assert result.logits.argmax(axis=1).tolist() == [next_token([1, 2, 3])]


def test_a_refused_batch_returns_none_and_writes_nothing() -> None:
    backend = FakeBackend(num_kv_tokens=64, num_real_cells=4)
    seq = seq_in_slot(0, [1, 2, 3, 4, 5])
    assert ModelRunner(backend).execute([ScheduledChunk(seq, 0, 5)]) is None
    assert backend.num_refused == 1 and backend.num_used_cells == 0


def test_an_empty_plan_runs_nothing() -> None:
    backend = FakeBackend()
    result = ModelRunner(backend).execute([])
    assert result is not None and result.sites == [] and result.logits.shape == (0, 256)
    assert backend.batches == []
