"""OutputProcessor as a plain object: sampled tokens in, Output deltas and finish reasons out."""

from __future__ import annotations

from typing import Any

import numpy as np
from fake_backend import FakeBackend

from llmport.engines.batching.output_processor import OutputProcessor
from llmport.engines.batching.sampler import SampleSite
from llmport.engines.batching.sequence import Sequence, SequenceStatus
from llmport.types import FinishReason, SamplingParams

PROMPT = list(b"say:")


class EogBackend(FakeBackend):
    """The fake model with token 0 as its end-of-generation token."""

    @property
    def eog_token_ids(self) -> frozenset[int]:
        return frozenset({0})


def make(backend: FakeBackend | None = None, **params: Any) -> tuple[OutputProcessor, Sequence]:
    processor = OutputProcessor(backend or EogBackend(max_model_len=32))
    sampling = SamplingParams(**{"temperature": 0.0, "max_tokens": 8, **params})
    detokenizer = processor.new_detokenizer(sampling)
    seq = Sequence("req", 0, PROMPT, sampling, sampling.max_tokens or 8, detokenizer, None)
    return processor, seq


def feed(processor: OutputProcessor, seq: Sequence, text: bytes) -> list[FinishReason | None]:
    """Append and process each byte as a sampled token (one-hot logits), as a step does."""
    reasons = []
    for token_id in text:
        logits = np.zeros((1, 256), dtype=np.float32)
        logits[0, token_id] = 1.0
        seq.append(token_id)
        reasons.append(processor.process_token(SampleSite(seq, 0, 0), token_id, logits, 1.0))
    return reasons


def finish(processor: OutputProcessor, seq: Sequence, reason: FinishReason) -> None:
    """What EngineCore does when a sequence ends, minus the scheduler's KV work."""
    processor.flush(seq)
    seq.status = SequenceStatus.FINISHED
    seq.finish_reason = reason


def test_deltas_carry_new_text_and_tokens_and_the_prompt_once() -> None:
    processor, seq = make()
    assert feed(processor, seq, b"ab") == [None, None]
    first = processor.make_output(seq)
    assert (first.text, first.token_ids, first.prompt_token_ids) == ("ab", list(b"ab"), PROMPT)
    assert first.usage is None and first.timings is None and first.finish_reason is None
    assert seq.timings.first_token == 1.0
    feed(processor, seq, b"c")
    second = processor.make_output(seq)
    assert (second.text, second.token_ids, second.prompt_token_ids) == ("c", [99], None)
    empty = processor.make_output(seq)
    assert (empty.text, empty.token_ids, empty.logprobs) == ("", [], None)


def test_a_stop_string_is_held_back_then_cut() -> None:
    processor, seq = make(stop=["xy"])
    assert feed(processor, seq, b"ax") == [None, None]
    assert processor.make_output(seq).text == "a"  # "x" may start the stop string
    assert feed(processor, seq, b"y") == [FinishReason.STOP]
    finish(processor, seq, FinishReason.STOP)
    last = processor.make_output(seq)
    assert last.text == "" and last.token_ids == list(b"y")
    assert last.finish_reason is FinishReason.STOP
    assert last.usage is not None and last.usage.completion_tokens == 3


def test_held_text_is_released_when_the_sequence_ends_otherwise() -> None:
    processor, seq = make(stop=["xy"], max_tokens=2)
    assert feed(processor, seq, b"ax") == [None, FinishReason.LENGTH]
    finish(processor, seq, FinishReason.LENGTH)
    output = processor.make_output(seq)
    assert output.text == "ax" and output.finish_reason is FinishReason.LENGTH


def test_end_tokens_and_stop_token_ids_stop_without_text() -> None:
    processor, seq = make(stop_token_ids=[ord("!")])
    assert feed(processor, seq, b"a!") == [None, FinishReason.STOP]
    assert processor.make_output(seq).text == "a"
    processor, seq = make()
    assert feed(processor, seq, b"a\x00") == [None, FinishReason.STOP]
    processor, seq = make(ignore_eos=True)
    assert feed(processor, seq, b"a\x00") == [None, None]


def test_length_ends_at_max_tokens_or_the_context() -> None:
    processor, seq = make(max_tokens=3)
    assert feed(processor, seq, b"abc") == [None, None, FinishReason.LENGTH]
    processor, seq = make(EogBackend(max_model_len=len(PROMPT) + 2), max_tokens=8)
    assert feed(processor, seq, b"ab") == [None, FinishReason.LENGTH]


def test_logprobs_of_the_chosen_and_the_top_tokens() -> None:
    processor, seq = make(logprobs=2)
    feed(processor, seq, b"a")
    output = processor.make_output(seq)
    assert output.logprobs is not None and len(output.logprobs) == 1
    entry = output.logprobs[0]
    # One-hot logits: the chosen token has e / (e + 255) of the mass.
    assert (entry.token_id, entry.token) == (ord("a"), "a")
    assert np.isclose(entry.logprob, 1.0 - np.log(np.e + 255))
    assert len(entry.top) == 2 and entry.top[0][:2] == (ord("a"), "a")
    assert processor.make_output(seq).logprobs is None


def test_embeddings_are_l2_normalized() -> None:
    processor, seq = make()
    processor.process_embeddings([seq], np.array([[3.0, 4.0]], dtype=np.float32), 2.0)
    assert seq.embedding == [0.6, 0.8]
    assert seq.timings.first_token == 2.0
