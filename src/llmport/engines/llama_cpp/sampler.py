"""llama.cpp's sampler chains: logit bias, penalties, truncation, temperature, draw.

A chain samples from llama.cpp's output buffer while it holds the step's logits, and
from the engine's copy of a row after an embedding pass overwrote that buffer.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import llama_cpp as llama
import numpy as np

from llmport.engines.batching.backend import FloatMatrix
from llmport.errors import ServerError
from llmport.types import SamplingParams


@dataclass
class OutputBuffer:
    """What llama.cpp's output buffer holds: the last decode's logits, or (after an
    embedding pass) embeddings. Shared by a backend and its samplers."""

    holds_logits: bool = False


#: llama.cpp's ``llama_token_data`` (id, logit, p), as a numpy record.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class LlamaSampler:
    """A llama.cpp sampler chain: logit bias, penalties, truncation, temperature, draw."""

    def __init__(
        self,
        ctx: llama.llama_context_p,
        vocab_size: int,
        params: SamplingParams,
        seed: int,
        buffer: OutputBuffer,
    ) -> None:
        self._ctx = ctx
        self._buffer = buffer
        self._chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        history = int(llama.llama_n_ctx(ctx))
        for stage in _chain_stages(vocab_size, params, seed, history):
            llama.llama_sampler_chain_add(self._chain, stage)

    def sample(self, output_index: int, row: FloatMatrix) -> int:
        if self._buffer.holds_logits:  # llama.cpp's own loop, over its own buffer
            return int(llama.llama_sampler_sample(self._chain, self._ctx, output_index))
        return self._sample_row(row)

    def _sample_row(self, row: FloatMatrix) -> int:
        """What ``llama_sampler_sample`` does, from ``row`` (a copy the engine kept before
        an embedding pass overwrote the context's buffer)."""
        data = np.empty(len(row), dtype=_TOKEN_DATA)
        data["id"] = np.arange(len(row), dtype=np.int32)
        data["logit"] = row
        data["p"] = 0.0
        candidates = llama.llama_token_data_array(
            data=data.ctypes.data_as(llama.llama_token_data_p),
            size=len(row),
            selected=-1,
            sorted=False,
        )
        llama.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        if not 0 <= candidates.selected < candidates.size:
            raise ServerError("the sampler chain selected no token")
        # Read through the array: a sampler may point it at its own buffer.
        token_id = int(candidates.data[candidates.selected].id)
        llama.llama_sampler_accept(self._chain, token_id)
        return token_id

    def close(self) -> None:
        if self._chain:
            llama.llama_sampler_free(self._chain)
            self._chain = None


def _chain_stages(
    vocab_size: int, params: SamplingParams, seed: int, context_len: int
) -> list[object]:
    stages: list[object] = []
    if params.logit_bias:
        biases = (llama.llama_logit_bias * len(params.logit_bias))(
            *(llama.llama_logit_bias(t, b) for t, b in params.logit_bias.items())
        )
        stages.append(llama.llama_sampler_init_logit_bias(vocab_size, len(biases), biases))
    if params.has_penalties:
        stages.append(
            llama.llama_sampler_init_penalties(
                vocab_size,
                # llama.cpp reads < 0 as 0 (off); our -1 means the whole context.
                params.penalty_last_n if params.penalty_last_n >= 0 else context_len,
                params.repetition_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if params.is_greedy:
        stages.append(llama.llama_sampler_init_greedy())
        return stages
    if params.top_k > 0:
        stages.append(llama.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        stages.append(llama.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        stages.append(llama.llama_sampler_init_min_p(params.min_p, 1))
    stages.append(llama.llama_sampler_init_temp(params.temperature))
    stages.append(llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return stages
