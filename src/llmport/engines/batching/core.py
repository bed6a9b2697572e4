"""EngineCore: one model's requests, advanced one batched forward pass per step."""

from __future__ import annotations

import logging
import random
import time

from llmport.config import EngineConfig
from llmport.engine.protocol import EngineStats
from llmport.engines.batching.backend import Backend, FloatMatrix
from llmport.engines.batching.kv import kv_policy_for
from llmport.engines.batching.output_processor import OutputProcessor
from llmport.engines.batching.prefix_cache import PrefixCache
from llmport.engines.batching.runner import ForwardResult, ModelRunner
from llmport.engines.batching.sampler import needs_chain, sample
from llmport.engines.batching.scheduler import ScheduledChunk, Scheduler
from llmport.engines.batching.sequence import Sequence
from llmport.errors import ContextLengthExceeded, InvalidParameter
from llmport.types import FinishReason, Output, Request, SamplingParams

logger = logging.getLogger(__name__)


class EngineCore:
    """Owns the backend, the scheduler and every live sequence. Single-threaded."""

    def __init__(
        self, backend: Backend, config: EngineConfig, scheduler: Scheduler | None = None
    ) -> None:
        """``scheduler`` over this backend's KV, for tests that watch it; default: one
        sized from ``config``."""
        self.backend = backend
        self.config = config
        self.scheduler = _default_scheduler(backend, config) if scheduler is None else scheduler
        self.runner = ModelRunner(backend)
        self.output_processor = OutputProcessor(backend)
        self._rng = random.Random(config.seed)
        self._num_live: dict[str, int] = {}

    @property
    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished

    @property
    def num_requests(self) -> int:
        return len(self._num_live)

    # -- requests ----------------------------------------------------------------

    def add_request(self, request: Request) -> list[int]:
        """Validate and queue; returns the prompt's token ids. Raises ClientError."""
        if request.request_id in self._num_live:
            raise InvalidParameter(f"request id {request.request_id!r} is already running")
        params = request.params
        if request.embed:
            params = request.params = SamplingParams(n=1, max_tokens=1, temperature=0.0)
        params.validate(self.backend.vocab_size)
        prompt_ids = self._prompt_token_ids(request)
        room = self.backend.max_model_len - len(prompt_ids)
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        for index in range(params.n):
            self.scheduler.add(self._new_sequence(request, index, prompt_ids, max_tokens))
        self._num_live[request.request_id] = params.n
        return prompt_ids

    def _prompt_token_ids(self, request: Request) -> list[int]:
        if request.prompt_token_ids is not None:
            ids = list(request.prompt_token_ids)
            bad = [t for t in ids if not 0 <= t < self.backend.vocab_size]
            if bad:
                raise InvalidParameter(
                    f"prompt token ids {bad[:5]} are outside the vocabulary", param="prompt"
                )
        else:
            ids = (
                self.backend.tokenize(request.prompt, request.add_special_tokens)
                if request.prompt
                else []
            )
        if not ids:
            raise InvalidParameter("the prompt is empty", param="prompt")
        if len(ids) >= self.backend.max_model_len:
            raise ContextLengthExceeded(
                f"the prompt has {len(ids)} tokens but this model's context holds "
                f"{self.backend.max_model_len} (prompt plus at least one generated token)",
                param="prompt",
            )
        return ids

    def _new_sequence(
        self, request: Request, index: int, prompt_ids: list[int], max_tokens: int
    ) -> Sequence:
        params = request.params
        seed = self._rng.getrandbits(32) if params.seed is None else params.seed + index
        sampler = self.backend.new_sampler(params, seed) if needs_chain(params) else None
        seq = Sequence(
            request.request_id,
            index,
            prompt_ids,
            params,
            max_tokens,
            self.output_processor.new_detokenizer(params),
            sampler,
            is_embedding=request.embed,
        )
        if params.grammar is not None:
            seq.grammar = self.backend.new_grammar(params.grammar)
        return seq

    def abort_request(self, request_id: str) -> list[Output]:
        """Stop a request now; its KV is freed (kept as a cached prefix) this call."""
        outputs = []
        for seq in self.scheduler.find(request_id):
            self._finish(seq, FinishReason.ABORT)
            outputs.append(self.output_processor.make_output(seq))
        return outputs

    def stats(self) -> EngineStats:
        scheduler = self.scheduler
        return EngineStats(
            num_requests=len(self._num_live),
            num_running=len(scheduler.running),
            num_waiting=len(scheduler.waiting),
            num_cached_prefixes=len(scheduler.prefix_cache),
            num_used_kv_cells=scheduler.kv.num_used_cells,
            num_kv_cells=scheduler.kv.num_cells,
        )

    def reset_prefix_cache(self) -> None:
        self.scheduler.prefix_cache.clear()

    # -- the step ------------------------------------------------------------------

    def step(self) -> list[Output]:
        """Schedule, forward, update: one batched llama_decode for every live sequence.

        The plan fits the scheduler's KV estimate. If llama.cpp refuses it anyway
        (KvCacheFull), this step emits nothing and the next ``schedule`` frees KV first.
        """
        plan = self.scheduler.schedule()
        result = self.runner.execute(plan)
        return self._update(plan, result)

    def _update(self, plan: list[ScheduledChunk], result: ForwardResult | None) -> list[Output]:
        """Commit the plan's KV, sample a token per site, and emit every changed sequence's
        delta. A refused plan (None) changed nothing: the scheduler answers it next step."""
        if result is None:
            self.scheduler.refuse(plan)
            return []
        self.scheduler.commit(plan)
        now = time.monotonic()
        outputs = [] if result.hidden is None else self._embed(result.embedded, result.hidden, now)
        processor = self.output_processor
        sites = result.sites
        for site, token_id in zip(sites, sample(result.logits, sites), strict=True):
            site.seq.append(token_id)
            reason = processor.process_token(site, token_id, result.logits, now)
            if reason is not None:
                self._finish(site.seq, reason)
            outputs.append(processor.make_output(site.seq))
        return outputs

    def _embed(self, seqs: list[Sequence], hidden: FloatMatrix, now: float) -> list[Output]:
        """Embedding requests end after their prefill, with a vector and no tokens."""
        normalize = not self.backend.is_reranker  # A reranker's scores are final.
        self.output_processor.process_embeddings(seqs, hidden, now, normalize)
        outputs = []
        for seq in seqs:
            self._finish(seq, FinishReason.STOP)
            outputs.append(self.output_processor.make_output(seq))
        return outputs

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        """The one way a sequence ends: release its held text, close its sampler and
        grammar (C memory), hand its KV to the scheduler (as a cached prefix)."""
        self.output_processor.flush(seq)
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
        if seq.grammar is not None:
            seq.grammar.close()
            seq.grammar = None
        self.scheduler.finish(seq, reason)
        seq.timings.finished = time.monotonic()
        remaining = self._num_live.get(seq.request_id, 1) - 1
        if remaining:
            self._num_live[seq.request_id] = remaining
        else:
            self._num_live.pop(seq.request_id, None)

    def close(self) -> None:
        for seq in [*self.scheduler.running, *self.scheduler.waiting]:
            self._finish(seq, FinishReason.ABORT)
        self.scheduler.prefix_cache.clear()
        self.backend.close()


def _default_scheduler(backend: Backend, config: EngineConfig) -> Scheduler:
    """Cached prefixes (when caching is on) live in the slots beyond ``max_num_seqs`` of
    a unified cache, and in any stream no sequence runs in per sequence (the streams
    beyond ``max_num_seqs`` hold only prefixes copied from running sequences)."""
    kv = kv_policy_for(backend, config.max_num_seqs)
    num_cache_entries = kv.num_cache_slots(config.max_num_seqs)
    return Scheduler(
        kv,
        PrefixCache(kv, num_cache_entries if config.enable_prefix_caching else 0),
        config.max_num_seqs,
        min(config.max_num_batched_tokens, backend.max_num_batched_tokens),
    )
