"""The llama.cpp engine kind: llmport's own batching engine over a GGUF model.

``create`` runs in the worker process and is the only place llama.cpp is imported
for serving; the server process uses ``plan`` alone (pure Python over the GGUF
header), so it never loads llama.cpp.
"""

from __future__ import annotations

from typing import Any

from llmport.config import EngineConfig
from llmport.engine.protocol import EngineInfo, EngineStats, WorkerEngine
from llmport.engine.registry import EngineKind, LoadTarget
from llmport.engines.batching.core import EngineCore
from llmport.engines.llama_cpp.memory import plan
from llmport.errors import InvalidParameter
from llmport.types import Output, Request


class BatchingEngine:
    """``EngineCore`` as a WorkerEngine: the step loop plus the model's vocabulary."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        backend = core.backend
        self._info = EngineInfo(
            vocab_size=backend.vocab_size,
            max_model_len=backend.max_model_len,
            num_kv_tokens=backend.num_kv_tokens,
            max_num_seqs=core.config.max_num_seqs,
            bos_token=backend.bos_token,
            eos_token=backend.eos_token,
            kind=LLAMA_CPP_NAME,
            is_reranker=backend.is_reranker,
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def has_unfinished_requests(self) -> bool:
        return self.core.has_unfinished_requests

    @property
    def unfinished_request_ids(self) -> list[str]:
        scheduler = self.core.scheduler
        return list(dict.fromkeys(s.request_id for s in [*scheduler.running, *scheduler.waiting]))

    def add_request(self, request: Request) -> list[int]:
        return self.core.add_request(request)

    def abort_request(self, request_id: str) -> list[Output]:
        return self.core.abort_request(request_id)

    def step(self) -> list[Output]:
        return self.core.step()

    def stats(self) -> EngineStats:
        return self.core.stats()

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return self.core.backend.tokenize(text, add_special_tokens)

    def detokenize(self, token_ids: list[int]) -> str:
        vocab_size = self._info.vocab_size
        bad = [t for t in token_ids if not 0 <= t < vocab_size]
        if bad:
            raise InvalidParameter(
                f"token ids {bad[:5]} are outside the vocabulary", param="tokens"
            )
        data = b"".join(self.core.backend.piece(t) for t in token_ids)
        return data.decode(errors="replace")

    def reset_prefix_cache(self) -> None:
        self.core.reset_prefix_cache()

    def close(self) -> None:
        self.core.close()


def create(target: LoadTarget, config: Any) -> WorkerEngine:
    """Load the GGUF with llama.cpp (in the worker process) and wrap its engine."""
    from pathlib import Path

    from llmport.engines.llama_cpp.backend import LlamaCppBackend

    backend = LlamaCppBackend(Path(target.weight_files[0]), config)
    return BatchingEngine(EngineCore(backend, config))


def warm_up() -> None:
    import llmport.engines.llama_cpp.backend  # noqa: F401


LLAMA_CPP_NAME = "llama_cpp"
LLAMA_CPP = EngineKind(
    name=LLAMA_CPP_NAME,
    formats=frozenset({"gguf"}),
    config_class=EngineConfig,
    plan=plan,
    create=create,
    warm_up=warm_up,
)
