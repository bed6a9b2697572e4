"""vLLM's engine behind the WorkerEngine protocol: a Hugging Face model in a worker.

The worker drives engines a step at a time, so this wraps vLLM's step-driven
``LLMEngine`` (the synchronous face of the same v1 engine core that ``AsyncLLM``
serves): requests go in as token ids, ``step`` returns vLLM's delta outputs turned into
ours. The core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the worker
already is the model's own process, and a daemon process may not start another.
Only this module imports vLLM, and only in the worker.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from llmport.engine.protocol import EngineInfo, EngineStats
from llmport.errors import (
    ContextLengthExceeded,
    InvalidParameter,
    LlmportError,
    UnsupportedOption,
)
from llmport.types import (
    FinishReason,
    Image,
    Output,
    Request,
    SamplingParams,
    Timings,
    TokenLogprob,
    Usage,
)

logger = logging.getLogger(__name__)

#: ``penalty_last_n`` values vLLM honours: Ollama's default (which cannot be told from
#: unset), -1 (the whole context: vLLM's only window) and 0 (no penalty).
_PENALTY_WINDOWS = (64, -1, 0)
#: The largest image decoded (pixels; 12 bytes each as it is decoded and converted):
#: vision models resize far below this anyway.
MAX_IMAGE_PIXELS = 40_000_000
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}


@dataclass
class _Live:
    """One request in flight: what its outputs need that vLLM's deltas do not carry."""

    prompt_token_ids: list[int]
    open_indexes: set[int]
    timings: Timings
    num_tokens: dict[int, int] = field(default_factory=dict)
    has_sent_prompt: bool = False
    #: The prompt as vLLM counts it: each image's placeholder expanded into its tokens.
    num_prompt_tokens: int = 0


class VllmEngine:
    """Owned by the worker's thread. ``engine`` is a loaded ``vllm.LLMEngine``."""

    def __init__(self, engine: Any, info: EngineInfo) -> None:
        self.engine = engine
        self.tokenizer = engine.get_tokenizer()
        self._info = info
        self._live: dict[str, _Live] = {}
        self._sleep_level = 0
        #: vLLM runs embedding models (sentence-transformers' layout, ``*Model``
        #: architectures) as its pooling runner: they embed and cannot generate.
        self._embeds = engine.vllm_config.model_config.runner_type == "pooling"

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def has_unfinished_requests(self) -> bool:
        return bool(self._live) or bool(self.engine.has_unfinished_requests())

    @property
    def unfinished_request_ids(self) -> list[str]:
        return list(self._live)

    def add_request(self, request: Request) -> list[int]:
        if request.embed != self._embeds:
            raise _wrong_runner(request.embed)
        token_ids = request.prompt_token_ids
        if token_ids is None:
            token_ids = self.tokenize(request.prompt or "", request.add_special_tokens)
        if not token_ids:
            raise InvalidParameter("the prompt is empty", param="prompt")
        max_model_len = self._info.max_model_len
        if request.embed:
            return self._add_embedding(request.request_id, list(token_ids))
        if len(token_ids) >= max_model_len:
            raise ContextLengthExceeded(
                f"the prompt has {len(token_ids)} tokens; this model's context is "
                f"{max_model_len} tokens, with room for at least one more",
                param="messages",
            )
        params = self._sampling_params(request.params, max_model_len - len(token_ids))
        prompt: dict[str, Any] = {"prompt_token_ids": list(token_ids)}
        if request.images:
            prompt["multi_modal_data"] = {"image": [_decoded(i) for i in request.images]}
        try:
            self.engine.add_request(request.request_id, prompt, params)
        except ValueError as error:  # vLLM's validation errors are ValueErrors.
            raise InvalidParameter(str(error), param=getattr(error, "parameter", None)) from None
        except AssertionError as error:  # Its processor's, where images and marks disagree.
            raise InvalidParameter(
                f"the prompt's image placeholders do not match its images: {error}",
                param="messages",
            ) from None
        n = request.params.n
        self._live[request.request_id] = _Live(
            list(token_ids), set(range(n)), Timings(arrival=time.monotonic())
        )
        return list(token_ids)

    def _add_embedding(self, request_id: str, token_ids: list[int]) -> list[int]:
        """The prompt's embedding, pooled and normalized as the model's own (Sentence
        Transformers) configuration says."""
        from vllm.pooling_params import PoolingParams

        if len(token_ids) > self._info.max_model_len:
            raise ContextLengthExceeded(
                f"the input has {len(token_ids)} tokens; this model's context is "
                f"{self._info.max_model_len} tokens",
                param="input",
            )
        try:
            self.engine.add_request(
                request_id, {"prompt_token_ids": token_ids}, PoolingParams(task="embed")
            )
        except ValueError as error:
            raise InvalidParameter(str(error), param="input") from None
        self._live[request_id] = _Live(token_ids, {0}, Timings(arrival=time.monotonic()))
        return token_ids

    def _sampling_params(self, params: SamplingParams, room: int) -> Any:
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.sampling_params import SamplingParams as VllmSamplingParams

        _check_penalty_window(params)
        structured = None
        if params.grammar is not None:  # llama.cpp's GBNF is xgrammar's EBNF.
            structured = StructuredOutputsParams(grammar=params.grammar)
        try:
            return VllmSamplingParams(
                n=params.n,
                max_tokens=min(params.max_tokens or room, room),
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                min_p=params.min_p,
                repetition_penalty=params.repetition_penalty,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                seed=params.seed,
                stop=list(params.stop) or None,
                stop_token_ids=list(params.stop_token_ids) or None,
                ignore_eos=params.ignore_eos,
                logit_bias=dict(params.logit_bias) or None,
                logprobs=params.logprobs,
                include_stop_str_in_output=params.include_stop_str_in_output,
                structured_outputs=structured,
                output_kind=RequestOutputKind.DELTA,
            )
        except ValueError as error:
            raise InvalidParameter(str(error), param=getattr(error, "parameter", None)) from None

    def abort_request(self, request_id: str) -> list[Output]:
        live = self._live.pop(request_id, None)
        if live is None:
            return []
        self.engine.abort_request([request_id])
        live.timings.finished = time.monotonic()
        return [self._final(request_id, live, i, FinishReason.ABORT) for i in live.open_indexes]

    def step(self) -> list[Output]:
        outputs: list[Output] = []
        for result in self.engine.step():
            live = self._live.get(result.request_id)
            if live is None:
                continue
            if self._embeds:
                outputs.append(self._embedding(result, live))
                continue
            for choice in result.outputs:
                outputs.append(self._output(result, live, choice))
            if not live.open_indexes:
                del self._live[result.request_id]
        return outputs

    def _output(self, result: Any, live: _Live, choice: Any) -> Output:
        now = time.monotonic()
        if live.timings.first_token is None:
            live.timings.first_token = now
        index = int(choice.index)
        token_ids = list(choice.token_ids)
        live.num_tokens[index] = live.num_tokens.get(index, 0) + len(token_ids)
        output = Output(
            request_id=result.request_id,
            index=index,
            text=choice.text,
            token_ids=token_ids,
            logprobs=self._logprobs(token_ids, choice.logprobs),
        )
        if result.prompt_token_ids:
            live.num_prompt_tokens = len(result.prompt_token_ids)
        if not live.has_sent_prompt:
            output.prompt_token_ids = live.prompt_token_ids
            live.has_sent_prompt = True
        if choice.finish_reason is not None:
            live.open_indexes.discard(index)
            reason = _FINISH.get(str(choice.finish_reason))
            if reason is None:
                output.error = f"vLLM ended the answer: {choice.finish_reason}"
            output.finish_reason = reason
            live.timings.finished = now
            output.usage = self._usage(live, index, result.num_cached_tokens)
            output.timings = live.timings
        return output

    def _embedding(self, result: Any, live: _Live) -> Output:
        """A pooling runner's whole answer, in one output."""
        del self._live[result.request_id]
        live.timings.finished = time.monotonic()
        return Output(
            request_id=result.request_id,
            finish_reason=FinishReason.STOP,
            prompt_token_ids=live.prompt_token_ids,
            usage=self._usage(live, 0, result.num_cached_tokens),
            timings=live.timings,
            embedding=[float(x) for x in result.outputs.data.tolist()],
        )

    def _final(self, request_id: str, live: _Live, index: int, reason: FinishReason) -> Output:
        return Output(request_id=request_id, index=index, finish_reason=reason,
                      usage=self._usage(live, index, 0), timings=live.timings)  # fmt: skip

    def _usage(self, live: _Live, index: int, num_cached_tokens: int | None) -> Usage:
        return Usage(
            prompt_tokens=live.num_prompt_tokens or len(live.prompt_token_ids),
            completion_tokens=live.num_tokens.get(index, 0),
            cached_tokens=int(num_cached_tokens or 0),
        )

    def _logprobs(self, token_ids: list[int], found: Any) -> list[TokenLogprob] | None:
        """vLLM's per-token {id: Logprob} (the chosen token and the top ones) as ours."""
        if not found:
            return None
        result = []
        for token_id, ranked in zip(token_ids, found, strict=False):
            top = sorted(ranked.items(), key=lambda item: item[1].rank or 0)
            chosen = ranked.get(token_id)
            result.append(
                TokenLogprob(
                    token_id,
                    self._piece(token_id, chosen),
                    float(chosen.logprob) if chosen is not None else float("-inf"),
                    [(t, self._piece(t, lp), float(lp.logprob)) for t, lp in top if lp.rank],
                )
            )
        return result

    def _piece(self, token_id: int, logprob: Any) -> str:
        decoded = getattr(logprob, "decoded_token", None)
        return decoded if isinstance(decoded, str) else self.tokenizer.decode([token_id])

    def stats(self) -> EngineStats:
        scheduler = self._scheduler()
        num_running = len(scheduler.running) if scheduler is not None else len(self._live)
        num_waiting = len(scheduler.waiting) if scheduler is not None else 0
        num_kv_cells = self._info.num_kv_tokens
        used = 0
        if scheduler is not None:
            with contextlib.suppress(AttributeError):
                used = int(scheduler.kv_cache_manager.usage * num_kv_cells)
        return EngineStats(len(self._live), num_running, num_waiting, 0, used, num_kv_cells)

    def _scheduler(self) -> Any:
        """The in-process core's scheduler (None where the core runs elsewhere)."""
        core = getattr(self.engine.engine_core, "engine_core", None)
        return getattr(core, "scheduler", None)

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def detokenize(self, token_ids: list[int]) -> str:
        vocab_size = self._info.vocab_size
        bad = [t for t in token_ids if not 0 <= t < vocab_size]
        if bad:
            raise InvalidParameter(
                f"token ids {bad[:5]} are outside the vocabulary", param="tokens"
            )
        return str(self.tokenizer.decode(token_ids))

    def reset_prefix_cache(self) -> None:
        self.engine.reset_prefix_cache()

    def sleep(self, level: int) -> None:
        """vLLM's sleep mode (GPU only): level 1 moves the weights to host memory and drops
        the KV cache; level 2 drops both. Requests in flight are aborted first."""
        for request_id in list(self._live):
            self.abort_request(request_id)
        self.engine.sleep(level)
        self._sleep_level = level

    def wake_up(self) -> None:
        """Back from sleep; after level 2 the weights are read again from the model's files
        before the KV cache returns (vLLM's documented order)."""
        if self._sleep_level >= 2:
            self.engine.wake_up(tags=["weights"])
            self.engine.collective_rpc("reload_weights")
            self.engine.wake_up(tags=["kv_cache"])
        else:
            self.engine.wake_up()
        self.engine.reset_prefix_cache()
        self._sleep_level = 0

    def close(self) -> None:
        for request_id in list(self._live):
            self.abort_request(request_id)
        with contextlib.suppress(LlmportError, RuntimeError, AttributeError):
            self.engine.engine_core.shutdown()


def _wrong_runner(embed: bool) -> UnsupportedOption:
    if embed:
        return UnsupportedOption(
            "embeddings: this model generates text (vLLM runs it as a generative model), "
            "it does not embed",
            param="input",
        )
    return UnsupportedOption(
        "this model is an embedding model (vLLM runs it as a pooling model): it answers "
        "embeddings, not text",
        param="model",
    )


def _decoded(image: Image) -> Any:
    """A PIL image (vLLM's input) from the file's bytes; one PIL cannot read, or too
    large to decode without risking the worker's memory, is the client's 400, naming the
    field it came in."""
    from PIL import Image as PilImage

    try:
        decoded = PilImage.open(io.BytesIO(image.data))
        width, height = decoded.size  # From the header: nothing decoded yet.
        if width * height > MAX_IMAGE_PIXELS:
            raise InvalidParameter(
                f"{image.where}: the image is {width}x{height} pixels; at most "
                f"{MAX_IMAGE_PIXELS // 1_000_000} million are taken",
                param=image.where,
            )
        decoded.load()
        return decoded.convert("RGB")
    except (OSError, ValueError, SyntaxError, PilImage.DecompressionBombError) as error:
        raise InvalidParameter(
            f"{image.where}: the image could not be decoded: {error}", param=image.where
        ) from None


def _check_penalty_window(params: SamplingParams) -> None:
    """vLLM penalizes repeats over the whole context; a window it cannot keep is refused
    rather than ignored."""
    if params.penalty_last_n not in _PENALTY_WINDOWS:
        raise UnsupportedOption(
            f"repeat_last_n {params.penalty_last_n}: vLLM penalizes repetition over the whole "
            "context, not the last N tokens (use -1, or leave it unset)",
            param="options.repeat_last_n",
        )
