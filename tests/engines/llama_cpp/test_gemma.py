"""Correctness on the real Gemma 3 270M Q4_K_M model (slow).

llama.cpp's CPU kernels are not batch-invariant (a ubatch over ~64 tokens
takes another matmul path), so batched output is checked by teacher forcing
against a one-token-at-a-time llama.cpp reference, not by token equality.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from engine_helpers import KV_LAYOUTS, joined, make_engine, request, run_all

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "def fibonacci(n):",
    "The largest planet in the solar system is",
    "In 1969, astronauts",
    "A good recipe for pancakes needs",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "My favourite book is",
    "The stock market today",
    "To install Python on Linux, first",
    "The meaning of life is",
    "Dear hiring manager, I am writing to",
    "Mount Everest is located in",
]


def reference_gaps(
    reference: llama_cpp.Llama, prompt_ids: list[int], generated: list[int]
) -> np.ndarray:
    """How far below the reference's best logit each generated token scored (0: its
    argmax), teacher-forced on the prompt and the tokens before it."""
    reference.reset()
    reference.eval(prompt_ids + generated[:-1])
    start = len(prompt_ids) - 1
    scores = np.asarray(reference.scores[start : start + len(generated)])
    gaps: np.ndarray = scores.max(axis=1) - scores[np.arange(len(generated)), generated]
    return gaps


def test_single_request_matches_create_completion(gemma_model_path: Path) -> None:
    prompt = "The capital of France is"
    engine = make_engine(gemma_model_path)
    engine.add_request(request("a", prompt, max_tokens=32))
    text, _ = joined(run_all(engine)["a"])
    engine.close()
    reference = llama_cpp.Llama(str(gemma_model_path), n_ctx=1024, verbose=False)
    expected = reference.create_completion(prompt, max_tokens=32, temperature=0)
    reference.close()
    assert text == expected["choices"][0]["text"]  # type: ignore[index]


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_batched_tokens_are_the_reference_argmax(gemma_model_path: Path, layout: str) -> None:
    engine = make_engine(
        gemma_model_path, max_num_seqs=16, max_num_batched_tokens=64, kv_layout=layout
    )
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(request(str(i), prompt, max_tokens=24, ignore_eos=True))
    results = {rid: outs for rid, outs in run_all(engine).items()}
    engine.close()

    reference = llama_cpp.Llama(
        str(gemma_model_path), n_ctx=512, n_batch=1, n_ubatch=1, logits_all=True, verbose=False
    )
    num_positions = num_argmax = 0
    worst_gap = 0.0
    for outputs in results.values():
        prompt_ids = outputs[0].prompt_token_ids
        assert prompt_ids is not None
        generated = joined(outputs)[1]
        reference.reset()
        reference.eval(prompt_ids + generated[:-1])
        scores = np.asarray(
            reference.scores[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(generated)]
        )
        chosen = scores[np.arange(len(generated)), generated]
        gaps = scores.max(axis=1) - chosen
        num_positions += len(generated)
        num_argmax += int((gaps == 0).sum())
        worst_gap = max(worst_gap, float(gaps.max()))
    reference.close()
    assert num_argmax / num_positions >= 0.90, (num_argmax, num_positions)
    assert worst_gap <= 1.0, worst_gap


def test_same_batched_workload_twice_gives_same_tokens(gemma_model_path: Path) -> None:
    def workload() -> dict[str, list[int]]:
        engine = make_engine(gemma_model_path, max_num_seqs=8, max_num_batched_tokens=64)
        for i, prompt in enumerate(PROMPTS[:8]):
            engine.add_request(request(str(i), prompt, max_tokens=16, ignore_eos=True))
        tokens = {rid: joined(outs)[1] for rid, outs in run_all(engine).items()}
        engine.close()
        return tokens

    assert workload() == workload()


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_shared_prefix_is_reused_on_a_sliding_window_model(
    gemma_model_path: Path, layout: str
) -> None:
    engine = make_engine(gemma_model_path, kv_layout=layout)
    prefix = " ".join(f"item {i}" for i in range(170))  # about 500 tokens
    engine.add_request(request("first", prefix + " and then", max_tokens=8))
    run_all(engine)
    engine.add_request(request("second", prefix + " finally the", max_tokens=8))
    usage = run_all(engine)["second"][-1].usage
    engine.close()
    assert usage is not None
    assert usage.prompt_tokens >= 500
    assert usage.prompt_tokens - usage.cached_tokens < 50


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_chats_sent_together_share_a_system_prompt_longer_than_the_window(
    gemma_model_path: Path, layout: str
) -> None:
    """Past Gemma's 512-token sliding window the shared part can be copied only while the
    first prefill stands at its end: the followers get it, and answer as if alone."""
    system = " ".join(f"rule {i}: be brief." for i in range(120))  # about 720 tokens
    prompts = [f"{system}\nUser: {question}\nAssistant:" for question in ("hi", "why", "how")]
    engine = make_engine(gemma_model_path, max_num_seqs=4, kv_layout=layout)
    for i, prompt in enumerate(prompts):
        engine.add_request(request(str(i), prompt, max_tokens=6, ignore_eos=True))
    together = run_all(engine)
    engine.close()
    usages = [together[str(i)][-1].usage for i in range(3)]
    assert all(u is not None for u in usages)
    assert usages[0].cached_tokens == 0  # type: ignore[union-attr]
    assert all(u.cached_tokens >= 700 for u in usages[1:])  # type: ignore[union-attr]
    for i, prompt in enumerate(prompts[1:], start=1):
        alone = make_engine(gemma_model_path, kv_layout=layout)
        alone.add_request(request("x", prompt, max_tokens=6, ignore_eos=True))
        assert joined(run_all(alone)["x"])[1] == joined(together[str(i)])[1]
        alone.close()


@pytest.mark.parametrize("layout", KV_LAYOUTS)
def test_a_system_prompt_shared_past_the_window_serves_later_chats(
    gemma_model_path: Path, layout: str
) -> None:
    """Once a chat's stream outgrows the sliding-window layers' cells (1,024 per stream
    here), they keep only its last positions, so a later chat reuses the system prompt
    from the copy kept while the first chats shared it. Its tokens are the reference's
    argmax under teacher forcing (a gap from chunking, never a wrong prefix)."""
    system = " ".join(f"rule {i}: be brief." for i in range(220))  # about 1,870 tokens
    size = {"max_model_len": 2048} if layout == "per-seq" else {"max_num_kv_tokens": 8192}
    engine = make_engine(
        gemma_model_path, max_num_seqs=4, num_prefix_cache_slots=4, kv_layout=layout, **size
    )
    later = {}
    for wave in (["hi", "why", "how"], ["what", "when", "where"]):
        for question in wave:
            prompt = f"{system}\nUser: {question}\nAssistant:"
            engine.add_request(request(question, prompt, max_tokens=6, ignore_eos=True))
        later = run_all(engine)
    engine.close()
    reference = llama_cpp.Llama(str(gemma_model_path), n_ctx=2048, logits_all=True, verbose=False)
    for outputs in later.values():
        usage, prompt_ids = outputs[-1].usage, outputs[0].prompt_token_ids
        assert usage is not None and prompt_ids is not None
        assert usage.cached_tokens >= 1800
        generated = joined(outputs)[1]
        gaps = reference_gaps(reference, prompt_ids, generated)
        assert (gaps == 0).sum() >= len(generated) - 1 and gaps.max() <= 1.0, gaps
    reference.close()


def test_a_cached_prefix_moved_out_of_a_new_sequences_way_still_serves(
    gemma_model_path: Path,
) -> None:
    """Per-sequence streams: chats that finished out of order leave their KV in scattered
    slots; new sequences run in consecutive slots, and a finished chat's KV in the way
    moves to another stream (a whole-stream copy). Continuing that chat later reuses the
    moved KV, and its tokens are the reference's argmax (teacher-forced)."""
    engine = make_engine(
        gemma_model_path, max_num_seqs=4, num_prefix_cache_slots=1, kv_layout="per-seq"
    )
    for i, max_tokens in enumerate((9, 3, 12, 6)):  # Slots 0..3 finish 1, 3, 0, 2.
        engine.add_request(
            request(f"first-{i}", PROMPTS[i], max_tokens=max_tokens, ignore_eos=True)
        )
    run_all(engine)
    cache = engine.scheduler.prefix_cache
    assert cache.slots == [1, 3, 0, 2]
    before = {slot: cache.token_ids(slot) for slot in cache.slots}
    # The LRU frees slot 1 for the first new chat, then slot 3; the second takes slot 0,
    # next to the first, and the chat cached there moves to slot 3.
    for i in (4, 6):
        engine.add_request(request(f"new-{i}", PROMPTS[i], max_tokens=8, ignore_eos=True))
    engine.step()
    running = sorted(seq.slot for seq in engine.scheduler.running if seq.slot is not None)
    assert running == list(range(running[0], running[0] + 2))
    moved = [
        slot for slot in cache.slots if before.get(slot) != cache.token_ids(slot)
    ]  # An entry now in a slot that held another one (or none) before.
    assert len(moved) == 1 and cache.token_ids(moved[0]) in before.values()
    history = cache.token_ids(moved[0])
    run_all(engine)
    again = history + engine.backend.tokenize(" And the next one is", False)
    engine.add_request(request("again", again, max_tokens=8, ignore_eos=True))
    outputs = run_all(engine)["again"]
    engine.close()
    usage = outputs[-1].usage
    assert usage is not None and usage.cached_tokens == len(history)
    reference = llama_cpp.Llama(str(gemma_model_path), n_ctx=512, logits_all=True, verbose=False)
    gaps = reference_gaps(reference, again, joined(outputs)[1])
    reference.close()
    assert (gaps == 0).sum() >= len(gaps) - 1 and gaps.max() <= 1.0, gaps
