"""EngineCore end to end: over the deterministic fake backend, and on the tiny model with
real llama.cpp."""

from __future__ import annotations

import random
from pathlib import Path

import llama_cpp
import pytest
from fake_backend import FakeBackend, reference_output

from engine_helpers import KV_LAYOUTS, joined, kv_holders, make_engine, request, run_all
from llmport.config import EngineConfig
from llmport.engines.batching.core import EngineCore
from llmport.errors import ContextLengthExceeded, InvalidParameter
from llmport.types import FinishReason, Output


def fake_engine(**backend_args: int) -> EngineCore:
    return EngineCore(FakeBackend(**backend_args), EngineConfig(max_num_seqs=4))


# -- over the fake backend ---------------------------------------------------------------


def test_each_step_emits_one_delta_per_sampled_token() -> None:
    engine = fake_engine()
    prompt = [5, 6, 7]
    assert engine.add_request(request("a", prompt, max_tokens=6)) == prompt
    outputs = run_all(engine)["a"]
    assert [o.token_ids for o in outputs] == [[t] for t in reference_output(prompt, 6)]
    assert outputs[0].prompt_token_ids == prompt
    assert all(o.prompt_token_ids is None and o.usage is None for o in outputs[1:-1])
    last = outputs[-1]
    assert last.finish_reason is FinishReason.LENGTH and last.timings is not None
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 6)
    assert engine.num_requests == 0 and engine.stats().num_cached_prefixes == 1


def test_n_choices_share_the_first_choices_prompt_kv() -> None:
    engine = fake_engine()
    prompt = list(range(30))
    engine.add_request(request("n3", prompt, n=3, max_tokens=4))
    outputs = run_all(engine)["n3"]
    cached = {o.index: o.usage.cached_tokens for o in outputs if o.usage is not None}
    assert cached == {0: 0, 1: 29, 2: 29}
    for index in range(3):
        token_ids = [t for o in outputs if o.index == index for t in o.token_ids]
        assert token_ids == reference_output(prompt, 4)


def test_abort_ends_the_request_now_and_keeps_its_kv_as_a_prefix() -> None:
    engine = fake_engine()
    engine.add_request(request("a", list(range(10)), max_tokens=50))
    engine.add_request(request("b", list(range(20)), max_tokens=50))
    engine.step()
    engine.step()
    (output,) = engine.abort_request("a")
    assert output.finish_reason is FinishReason.ABORT and output.token_ids == []
    assert output.usage is not None and output.usage.completion_tokens == 2
    assert engine.abort_request("a") == []
    stats = engine.stats()
    assert (stats.num_requests, stats.num_running, stats.num_cached_prefixes) == (1, 1, 1)
    engine.close()
    assert isinstance(engine.backend, FakeBackend) and engine.backend.is_closed
    assert engine.num_requests == 0


def test_single_greedy_request_matches_llama_cpp_python(tiny_model_path: Path) -> None:
    prompt = "the weather in the north is"
    engine = make_engine(tiny_model_path)
    engine.add_request(request("a", prompt, max_tokens=24, ignore_eos=True))
    _, token_ids = joined(run_all(engine)["a"])
    engine.close()

    reference = llama_cpp.Llama(str(tiny_model_path), n_ctx=512, verbose=False)
    expected = []
    for token in reference.generate(reference.tokenize(prompt.encode()), temp=0.0):
        expected.append(token)
        if len(expected) == 24:
            break
    reference.close()
    assert token_ids == expected


def test_streams_deltas_with_usage_on_the_last(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path)
    ids = engine.add_request(request("a", "hello there", max_tokens=5, ignore_eos=True))
    outputs = run_all(engine)["a"]
    engine.close()
    assert len(outputs) == 5
    assert outputs[0].prompt_token_ids == ids
    assert all(o.finish_reason is None for o in outputs[:-1])
    last = outputs[-1]
    assert last.finish_reason is FinishReason.LENGTH
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (len(ids), 5)
    assert last.timings is not None and last.timings.first_token is not None


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_batched_equals_sequential_on_the_tiny_model(tiny_model_path: Path, layout: str) -> None:
    """f32 tiny model: batching must not change a single token."""
    prompts = [f"prompt number {i} says {'hello ' * i}" for i in range(12)]
    solo = {}
    for i, prompt in enumerate(prompts):
        engine = make_engine(tiny_model_path, kv_layout=layout)
        engine.add_request(request(str(i), prompt, max_tokens=16, ignore_eos=True))
        solo[str(i)] = joined(run_all(engine)[str(i)])[1]
        engine.close()
    engine = make_engine(
        tiny_model_path, max_num_seqs=8, max_num_batched_tokens=32, kv_layout=layout
    )
    for i, prompt in enumerate(prompts):
        engine.add_request(request(str(i), prompt, max_tokens=16, ignore_eos=True))
    batched = {rid: joined(outs)[1] for rid, outs in run_all(engine).items()}
    engine.close()
    assert batched == solo


def test_same_workload_twice_gives_same_tokens(tiny_model_path: Path) -> None:
    def workload() -> dict[str, list[int]]:
        engine = make_engine(tiny_model_path, max_num_seqs=4, max_num_batched_tokens=24)
        for i in range(10):
            engine.add_request(
                request(str(i), f"run {i} " * (i + 1), max_tokens=12, temperature=0.8, seed=i)
            )
        result = {rid: joined(outs)[1] for rid, outs in run_all(engine).items()}
        engine.close()
        return result

    assert workload() == workload()


def test_stop_strings_end_the_text_before_them(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path)
    engine.add_request(request("free", "stop test", max_tokens=40, ignore_eos=True))
    text, _ = joined(run_all(engine)["free"])
    stop = text[10:12]
    engine.add_request(request("stop", "stop test", max_tokens=40, ignore_eos=True, stop=[stop]))
    outputs = run_all(engine)["stop"]
    engine.close()
    stopped, _ = joined(outputs)
    assert stopped == text[: text.index(stop)]
    assert outputs[-1].finish_reason is FinishReason.STOP


def test_stop_token_ids_finish_with_stop(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path)
    engine.add_request(request("free", "tokens", max_tokens=20, ignore_eos=True))
    _, ids = joined(run_all(engine)["free"])
    engine.add_request(
        request("stop", "tokens", max_tokens=20, ignore_eos=True, stop_token_ids=[ids[5]])
    )
    outputs = run_all(engine)["stop"]
    engine.close()
    _, stopped_ids = joined(outputs)
    assert stopped_ids == ids[: ids.index(ids[5]) + 1]
    assert outputs[-1].finish_reason is FinishReason.STOP


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_shared_prefix_is_reused_not_prefilled(tiny_model_path: Path, layout: str) -> None:
    engine = make_engine(tiny_model_path, kv_layout=layout)
    rng = random.Random(0)
    prefix = [rng.randrange(0, 256) for _ in range(500)]
    engine.add_request(request("first", [*prefix, 10, 11, 12], max_tokens=4))
    run_all(engine)
    engine.add_request(request("second", [*prefix, 20, 21, 22, 23], max_tokens=4))
    last = run_all(engine)["second"][-1]
    engine.close()
    assert last.usage is not None
    assert last.usage.cached_tokens >= 500
    assert last.usage.prompt_tokens - last.usage.cached_tokens < 50


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_prefix_from_a_running_sequence_is_reused(tiny_model_path: Path, layout: str) -> None:
    engine = make_engine(tiny_model_path, max_num_batched_tokens=64, kv_layout=layout)
    prefix = [i % 250 for i in range(300)]
    engine.add_request(request("first", prefix, max_tokens=50, ignore_eos=True))
    for _ in range(8):  # the first prompt is prefilled and decoding
        engine.step()
    engine.add_request(request("second", [*prefix, 1, 2, 3], max_tokens=2, ignore_eos=True))
    outputs = run_all(engine)
    engine.close()
    usage = outputs["second"][-1].usage
    assert usage is not None and usage.cached_tokens >= 290


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_reused_prefix_gives_the_same_tokens_as_a_fresh_prefill(
    tiny_model_path: Path, layout: str
) -> None:
    prompt = list(range(40, 240))
    fresh = make_engine(tiny_model_path, enable_prefix_caching=False, kv_layout=layout)
    fresh.add_request(request("x", prompt, max_tokens=12, ignore_eos=True))
    expected = joined(run_all(fresh)["x"])[1]
    fresh.close()
    engine = make_engine(tiny_model_path, kv_layout=layout)
    engine.add_request(request("warm", [*prompt[:150], 7, 7], max_tokens=3, ignore_eos=True))
    run_all(engine)
    engine.add_request(request("x", prompt, max_tokens=12, ignore_eos=True))
    outputs = run_all(engine)["x"]
    engine.close()
    assert outputs[-1].usage is not None and outputs[-1].usage.cached_tokens >= 150
    assert joined(outputs)[1] == expected


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_thousand_random_requests_leave_nothing_behind(tiny_model_path: Path, layout: str) -> None:
    rng = random.Random(1234)
    size = {"max_model_len": 256} if layout == "per-seq" else {"max_num_kv_tokens": 2048}
    engine = make_engine(
        tiny_model_path, max_num_seqs=8, max_num_batched_tokens=64, kv_layout=layout, **size
    )
    live: list[str] = []
    finished = 0
    for i in range(1000):
        prompt = [rng.randrange(0, 276) for _ in range(rng.randint(1, 120))]
        if rng.random() < 0.3:  # share a prefix with an earlier prompt
            prompt = list(range(50)) + prompt
        stop = ["".join(rng.choice("abcdefgh ") for _ in range(rng.randint(1, 3)))]
        engine.add_request(
            request(
                str(i),
                prompt,
                max_tokens=rng.randint(1, 40),
                stop=stop,
                temperature=rng.choice([0.0, 0.7]),
                repetition_penalty=rng.choice([1.0, 1.0, 1.2]),
                seed=i,
            )
        )
        live.append(str(i))
        for _ in range(rng.randint(0, 3)):
            finished += sum(o.finished for o in engine.step())
        if rng.random() < 0.15:
            victim = live[rng.randrange(len(live))]
            finished += sum(o.finished for o in engine.abort_request(victim))
    finished += sum(o.finished for o in run_all(engine).values() for o in o)
    assert finished == 1000
    assert not engine.scheduler.running and not engine.scheduler.waiting
    assert engine.num_requests == 0
    cache = engine.scheduler.prefix_cache
    held = kv_holders(engine)
    assert set(held) == set(cache.slots)
    for slot, (low, high) in held.items():
        assert low == 0 and high == len(cache.token_ids(slot)) - 1
    engine.reset_prefix_cache()
    assert kv_holders(engine) == {}
    assert engine.scheduler.kv.num_used_cells == 0
    engine.close()


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop_token_ids": [10_000]}, "stop_token_ids"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"n": 0}, "n"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_bad_sampling_params_are_refused(
    tiny_model_path: Path, params: dict[str, object], param: str
) -> None:
    engine = make_engine(tiny_model_path)
    with pytest.raises(InvalidParameter) as caught:
        engine.add_request(request("bad", "hello", **params))
    assert caught.value.param == param
    assert not engine.has_unfinished_requests
    engine.close()


def test_empty_and_oversized_prompts_are_refused(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path, max_model_len=256)
    with pytest.raises(InvalidParameter, match="empty"):
        engine.add_request(request("empty", ""))
    with pytest.raises(InvalidParameter, match="empty"):
        engine.add_request(request("empty-ids", []))
    with pytest.raises(InvalidParameter, match="vocabulary"):
        engine.add_request(request("bad-ids", [1, 2, 99_999]))
    with pytest.raises(ContextLengthExceeded, match=r"300 tokens.*256"):
        engine.add_request(request("long", [i % 250 for i in range(300)]))
    engine.add_request(request("ok", "still serving", max_tokens=3))
    assert run_all(engine)["ok"][-1].finish_reason is not None
    engine.close()


def test_generation_is_capped_by_the_context(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path, max_model_len=64)
    engine.add_request(request("a", list(range(60)), max_tokens=100, ignore_eos=True))
    outputs = run_all(engine)["a"]
    engine.close()
    assert outputs[-1].finish_reason is FinishReason.LENGTH
    assert outputs[-1].usage is not None and outputs[-1].usage.completion_tokens == 4


def test_n_choices_and_logprobs(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path)
    engine.add_request(request("a", "many", n=3, max_tokens=6, temperature=1.0, seed=5, logprobs=2))
    outputs = run_all(engine)["a"]
    engine.close()
    assert {o.index for o in outputs} == {0, 1, 2}
    finals = [o for o in outputs if o.finish_reason is not None]
    assert len(finals) == 3
    for output in outputs:
        assert output.logprobs is not None and len(output.logprobs) == len(output.token_ids)
        for entry in output.logprobs:
            assert entry.logprob <= 0.0 and len(entry.top) == 2
            assert entry.top[0][2] >= entry.top[1][2]


def test_preemption_under_a_small_kv_cache_still_completes(tiny_model_path: Path) -> None:
    prompts = [list(range(i, i + 60)) for i in range(8)]
    roomy = make_engine(tiny_model_path, max_num_seqs=8)
    tight = make_engine(
        tiny_model_path, max_num_seqs=8, max_num_kv_tokens=300, enable_prefix_caching=False
    )
    results = []
    for engine in (roomy, tight):
        for i, prompt in enumerate(prompts):
            engine.add_request(request(str(i), prompt, max_tokens=30, ignore_eos=True))
        results.append({rid: joined(outs)[1] for rid, outs in run_all(engine).items()})
        engine.close()
    assert results[0] == results[1]


def test_per_sequence_streams_run_a_full_load_without_preemption(tiny_model_path: Path) -> None:
    """Each stream holds a whole sequence: the load that preempts a tight unified cache
    above runs at once, batched, with the same tokens, and llama.cpp sees one stream a
    slot (its own seq_pos_min/max)."""
    prompts = [list(range(i, i + 60)) for i in range(8)]
    engine = make_engine(tiny_model_path, max_num_seqs=8, max_model_len=128, kv_layout="per-seq")
    assert engine.backend.kv_layout == "per_seq" and engine.backend.num_slots == 8
    for i, prompt in enumerate(prompts):
        engine.add_request(request(str(i), prompt, max_tokens=30, ignore_eos=True))
    outputs: dict[str, list[Output]] = {}
    while engine.has_unfinished_requests:
        for output in engine.step():
            outputs.setdefault(output.request_id, []).append(output)
        assert not engine.scheduler.waiting  # a preempted sequence would wait again
        cache = engine.scheduler.prefix_cache
        expected = {s.slot: s.num_computed_tokens for s in engine.scheduler.running}
        expected |= {slot: len(cache.token_ids(slot)) for slot in cache.slots}
        assert {slot: high + 1 for slot, (_, high) in kv_holders(engine).items()} == expected
    results = {rid: joined(outs)[1] for rid, outs in outputs.items()}
    engine.close()
    roomy = make_engine(tiny_model_path, max_num_seqs=8)
    for i, prompt in enumerate(prompts):
        roomy.add_request(request(str(i), prompt, max_tokens=30, ignore_eos=True))
    assert {rid: joined(outs)[1] for rid, outs in run_all(roomy).items()} == results
    roomy.close()


def test_greedy_logit_bias_bans_and_forces_tokens(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path)
    engine.add_request(request("free", "bias", max_tokens=8, ignore_eos=True))
    _, free_ids = joined(run_all(engine)["free"])
    engine.add_request(
        request("ban", "bias", max_tokens=8, ignore_eos=True, logit_bias={free_ids[0]: -1e9})
    )
    engine.add_request(
        request("force", "bias", max_tokens=8, ignore_eos=True, logit_bias={65: 1e9})
    )
    outputs = run_all(engine)
    engine.close()
    assert joined(outputs["ban"])[1][0] != free_ids[0]
    assert joined(outputs["force"])[1] == [65] * 8


@pytest.mark.parametrize("penalty_last_n", [64, -1])
def test_penalties_run_in_the_llama_cpp_chain_and_stop_repeats(
    tiny_model_path: Path, penalty_last_n: int
) -> None:
    engine = make_engine(tiny_model_path)
    plain = request("plain", "penalties", max_tokens=40, ignore_eos=True)
    strict = request(
        "strict",
        "penalties",
        max_tokens=40,
        ignore_eos=True,
        repetition_penalty=50.0,
        presence_penalty=2.0,
        frequency_penalty=2.0,
        penalty_last_n=penalty_last_n,
    )
    engine.add_request(plain)
    engine.add_request(strict)
    outputs = {rid: joined(outs)[1] for rid, outs in run_all(engine).items()}
    assert len(set(outputs["plain"])) < 40  # The tiny model repeats itself when greedy...
    assert len(set(outputs["strict"])) == 40  # ...and the penalties forbid it.
    engine.close()


def test_n_choices_prefill_the_prompt_once(tiny_model_path: Path) -> None:
    engine = make_engine(tiny_model_path, max_num_batched_tokens=128)
    prompt = [(7 * i) % 250 for i in range(500)]
    engine.add_request(request("n4", prompt, n=4, max_tokens=5, temperature=0.8, seed=1))
    outputs = run_all(engine)["n4"]
    usages = {o.index: o.usage for o in outputs if o.usage is not None}
    assert sorted(usages) == [0, 1, 2, 3]
    assert usages[0] is not None and usages[0].cached_tokens == 0
    for index in (1, 2, 3):
        assert usages[index] is not None and usages[index].cached_tokens == 499
    engine.close()
