"""The public Python API, shaped like vLLM's ``LLM`` so its users feel at home.

``LLM`` runs the engine in this process (batch jobs, notebooks);
``AsyncLLM`` runs it in a worker process and streams, as the server does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmport.engine.protocol import EngineClient
from llmport.engine.registry import EngineKind, Plan, load_target
from llmport.engines.kinds import default_registry
from llmport.manager.budget import default_budget_bytes
from llmport.models.resolver import Resolver
from llmport.models.spec import ModelSpec
from llmport.runtime.base import LOCAL_NODE
from llmport.runtime.local import LocalRuntime
from llmport.store.embedded import EMBEDDED_MODEL_NAME, default_cache_dir
from llmport.store.hf_ref import is_hf_ref
from llmport.store.refs import find_record
from llmport.types import FinishReason, Output, Request, SamplingParams, TokenLogprob, Usage

Prompt = str | list[int]


@dataclass
class CompletionOutput:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass
class RequestOutput:
    """One prompt's result so far; ``outputs[i]`` is choice ``i`` (``n`` of them)."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = False
    usage: list[Usage | None] = field(default_factory=list)

    def add(self, delta: Output) -> None:
        choice = self.outputs[delta.index]
        choice.text += delta.text
        choice.token_ids += delta.token_ids
        choice.finish_reason = delta.finish_reason
        if delta.logprobs:
            choice.logprobs = (choice.logprobs or []) + delta.logprobs
        if delta.prompt_token_ids is not None:
            self.prompt_token_ids = delta.prompt_token_ids
        if delta.usage is not None:
            self.usage[delta.index] = delta.usage
        self.finished = all(c.finish_reason is not None for c in self.outputs)


def resolve_spec(model: str | Path | None) -> ModelSpec:
    """The spec for a model reference (a .gguf path or a known name); an
    ``hf.co/USER/REPO[:QUANT]`` not pulled yet is pulled first, as vLLM's ``LLM`` does."""
    name = str(model) if model is not None else ""
    resolver = Resolver(default_cache_dir())
    if is_hf_ref(name) and find_record(name, resolver.home) is None:
        resolver.library.pull(name)  # huggingface_hub is imported only when pulling.
    return resolver.resolve_now(name or EMBEDDED_MODEL_NAME)


def plan_engine(spec: ModelSpec, engine_args: dict[str, Any]) -> tuple[EngineKind, Plan]:
    """The engine kind for ``spec`` and its config sized under this machine's budget."""
    kind = default_registry().kind_for(spec)
    return kind, kind.plan(spec, kind.config_class(**engine_args), default_budget_bytes())


class LLM:
    """Offline batched generation in this process: ``LLM(model).generate(prompts, params)``."""

    def __init__(self, model: str | Path | None = None, **engine_args: Any) -> None:
        self.spec = resolve_spec(model)
        kind, plan = plan_engine(self.spec, engine_args)
        self.config = plan.config
        self.engine = kind.create(load_target(self.spec), plan.config)

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt to completion, batched; one RequestOutput per prompt, in order."""
        batch = _as_prompt_list(prompts)
        params = _as_params_list(sampling_params, len(batch))
        results = [self._add(prompt, p) for prompt, p in zip(batch, params, strict=True)]
        by_id = {r.request_id: r for r in results}
        while self.engine.has_unfinished_requests:
            for delta in self.engine.step():
                by_id[delta.request_id].add(delta)
        return results

    def stream(
        self, prompt: Prompt, sampling_params: SamplingParams | None = None
    ) -> Iterator[str]:
        """Yield one prompt's text as it is generated (choice 0)."""
        result = self._add(prompt, sampling_params or SamplingParams())
        try:
            while not result.finished:
                for delta in self.engine.step():
                    if delta.request_id == result.request_id:
                        result.add(delta)
                        yield delta.text
        finally:
            if not result.finished:
                self.engine.abort_request(result.request_id)

    def _add(self, prompt: Prompt, params: SamplingParams) -> RequestOutput:
        request = _request(prompt, params)
        ids = self.engine.add_request(request)
        return _empty_result(request, ids)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLLM:
    """Streaming generation from a worker process: ``async for out in llm.generate(...)``."""

    def __init__(self, client: EngineClient, spec: ModelSpec) -> None:
        self.client = client
        self.spec = spec

    @classmethod
    async def start(cls, model: str | Path | None = None, **engine_args: Any) -> AsyncLLM:
        spec = await asyncio.to_thread(resolve_spec, model)
        kind, plan = plan_engine(spec, engine_args)
        runtime = LocalRuntime(warm_spare=False)
        return cls(await runtime.start(kind.name, load_target(spec), *plan, LOCAL_NODE), spec)

    async def generate(
        self, prompt: Prompt, sampling_params: SamplingParams | None = None
    ) -> AsyncIterator[RequestOutput]:
        """Yield the cumulative result after every delta, like vLLM's AsyncLLM."""
        request = _request(prompt, sampling_params or SamplingParams())
        result = _empty_result(request, [])
        async for delta in self.client.generate(request):
            result.add(delta)
            yield result

    async def close(self) -> None:
        await self.client.close()


def _request(prompt: Prompt, params: SamplingParams) -> Request:
    request_id = uuid.uuid4().hex
    if isinstance(prompt, str):
        return Request(request_id=request_id, prompt=prompt, params=params)
    return Request(request_id=request_id, prompt_token_ids=list(prompt), params=params)


def _empty_result(request: Request, prompt_ids: list[int]) -> RequestOutput:
    n = request.params.n
    return RequestOutput(
        request_id=request.request_id,
        prompt=request.prompt,
        prompt_token_ids=prompt_ids,
        outputs=[CompletionOutput(index=i) for i in range(n)],
        usage=[None] * n,
    )


def _as_prompt_list(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    items = list(prompts)
    if items and all(isinstance(t, int) for t in items):
        return [[int(t) for t in items]]  # type: ignore[arg-type]
    return items  # type: ignore[return-value]


def _as_params_list(
    params: SamplingParams | Sequence[SamplingParams] | None, count: int
) -> list[SamplingParams]:
    if params is None:
        return [SamplingParams() for _ in range(count)]
    if isinstance(params, SamplingParams):
        return [params] * count
    return list(params)
