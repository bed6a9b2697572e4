"""Helpers for engine tests: build an in-process engine and run requests to the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmport.config import EngineConfig
from llmport.engines.batching.core import EngineCore
from llmport.engines.llama_cpp.backend import LlamaCppBackend
from llmport.types import Output, Request, SamplingParams

#: Both KV cache layouts, for tests that must hold under each.
KV_LAYOUTS = ["unified", "per-seq"]


def make_engine(model_path: Path, **config: Any) -> EngineCore:
    """A small engine: 4,096 shared KV cells, or per sequence streams of 1,024 tokens."""
    per_seq = config.get("kv_layout") == "per-seq"
    defaults = {"max_model_len": 1024} if per_seq else {"max_num_kv_tokens": 4096}
    settings = EngineConfig(**{**defaults, **config})
    return EngineCore(LlamaCppBackend(model_path, settings), settings)


def request(request_id: str, prompt: str | list[int], **params: Any) -> Request:
    sampling = SamplingParams(**{"temperature": 0.0, **params})
    if isinstance(prompt, str):
        return Request(request_id=request_id, prompt=prompt, params=sampling)
    return Request(request_id=request_id, prompt_token_ids=prompt, params=sampling)


def run_all(engine: EngineCore) -> dict[str, list[Output]]:
    """Step until idle; every request's outputs, in order."""
    outputs: dict[str, list[Output]] = {}
    while engine.has_unfinished_requests:
        for output in engine.step():
            outputs.setdefault(output.request_id, []).append(output)
    return outputs


def joined(outputs: list[Output]) -> tuple[str, list[int]]:
    return "".join(o.text for o in outputs), [t for o in outputs for t in o.token_ids]


def kv_holders(engine: EngineCore) -> dict[int, tuple[int, int]]:
    """Slots that hold KV according to llama.cpp itself (not our bookkeeping)."""
    backend = engine.backend
    held = {}
    for slot in range(backend.num_slots):
        positions = backend.slot_positions(slot)
        if positions is not None:
            held[slot] = positions
    return held
