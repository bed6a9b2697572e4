"""One choice of one request: its tokens, where its KV lives, and how it ends."""

from __future__ import annotations

import enum
import functools
import itertools
import time

import numpy as np
import numpy.typing as npt

from llmport.engines.batching.backend import TokenFilter, TokenSampler
from llmport.engines.batching.detokenizer import IncrementalDetokenizer
from llmport.types import FinishReason, SamplingParams, Timings, TokenLogprob


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


_counter = itertools.count()


class Sequence:
    """Token state of one generation stream.

    ``num_computed_tokens`` tokens have KV in ``slot``; the rest of
    ``token_ids`` must be fed to the model before the next sample.
    """

    def __init__(
        self,
        request_id: str,
        index: int,
        prompt_token_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        detokenizer: IncrementalDetokenizer,
        sampler: TokenSampler | None,
        is_embedding: bool = False,
    ) -> None:
        self.seq_id = next(_counter)
        self.request_id = request_id
        self.index = index
        self.token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.params = params
        self.max_tokens = max_tokens
        self.detokenizer = detokenizer
        self.sampler = sampler
        self.grammar: TokenFilter | None = None
        self.status = SequenceStatus.WAITING
        self.slot: int | None = None
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0
        self.finish_reason: FinishReason | None = None
        self.timings = Timings(arrival=time.monotonic())
        # What the next Output carries (cleared when it is emitted).
        self.new_token_ids: list[int] = []
        self.new_text = ""
        self.new_logprobs: list[TokenLogprob] = []
        self.is_first_output = True
        #: An embedding request: finishes after prefill with ``embedding`` set.
        self.is_embedding = is_embedding
        self.embedding: list[float] | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @functools.cached_property
    def prompt_array(self) -> npt.NDArray[np.int32]:
        """The prompt's token ids as an array (for prefix comparisons)."""
        return np.asarray(self.token_ids[: self.num_prompt_tokens], dtype=np.int32)

    def computed_token_ids(self) -> list[int]:
        return self.token_ids[: self.num_computed_tokens]

    def append(self, token_id: int) -> None:
        self.token_ids.append(token_id)
        self.new_token_ids.append(token_id)
