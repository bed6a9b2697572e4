"""Prometheus metrics, one registry per app (no globals): vLLM's families, per model."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmport.errors import LlmportError
from llmport.manager.manager import ModelManager
from llmport.types import Output

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Counters and histograms fed by the serving path; gauges refreshed at scrape time."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "llmport_requests", "Finished requests by model and HTTP status.",
            ["model", "status"], registry=registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "llmport_time_to_first_token_seconds", "Arrival to first token.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.itl = Histogram(
            "llmport_inter_token_latency_seconds", "Gap between streamed deltas.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.e2e = Histogram(
            "llmport_e2e_request_latency_seconds", "Arrival to last token.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "llmport_prompt_tokens", "Prompt tokens processed.", ["model"], registry=registry
        )
        self.prefill_tokens = Counter(
            "llmport_prefill_tokens",
            "Prompt tokens computed, not taken from the prefix cache (n > 1 choices share "
            "one prefill).",
            ["model"],
            registry=registry,
        )
        self.generation_tokens = Counter(
            "llmport_generation_tokens", "Tokens generated.", ["model"], registry=registry
        )
        self.running = Gauge(
            "llmport_num_requests_running", "Sequences decoding.", ["model"], registry=registry
        )
        self.waiting = Gauge(
            "llmport_num_requests_waiting", "Sequences queued.", ["model"], registry=registry
        )
        self.model_memory = Gauge(
            "llmport_model_memory_bytes", "Estimated memory of each loaded model.",
            ["model"], registry=registry,
        )  # fmt: skip
        self.loaded_models = Gauge("llmport_loaded_models", "Models loaded.", registry=registry)

    def observe_delta(self, model: str, output: Output, gap: float, is_first: bool) -> None:
        if is_first:
            self.ttft.labels(model).observe(gap)
        elif output.token_ids:
            self.itl.labels(model).observe(gap)
        if output.prompt_token_ids is not None and output.index == 0:
            self.prompt_tokens.labels(model).inc(len(output.prompt_token_ids))
        self.generation_tokens.labels(model).inc(len(output.token_ids))
        if output.usage is not None:
            computed = output.usage.prompt_tokens - output.usage.cached_tokens
            self.prefill_tokens.labels(model).inc(max(0, computed))

    def observe_finished(self, model: str, seconds: float) -> None:
        self.e2e.labels(model).observe(seconds)

    def count_request(self, model: str, status: int) -> None:
        # Unknown names would grow the label set without bound.
        self.requests.labels(model if status != 404 else "", str(status)).inc()

    async def render(self, manager: ModelManager) -> bytes:
        """The exposition text, with each loaded engine's load asked for now."""
        for gauge in (self.running, self.waiting, self.model_memory):
            gauge.clear()
        loaded = manager.loaded()
        self.loaded_models.set(len(loaded))
        for model in loaded:
            self.model_memory.labels(model.name).set(model.memory.total_bytes)
            try:
                stats = await model.engine.stats()
            except LlmportError:
                continue  # A worker that just died has no load to report.
            self.running.labels(model.name).set(stats.num_running)
            self.waiting.labels(model.name).set(stats.num_waiting)
        return generate_latest(self.registry)
