"""The local runtime's engine client and its worker process, end to end on the tiny model."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine_helpers import joined, make_engine, request, run_all
from llmport.config import EngineConfig
from llmport.engine.protocol import EngineClient
from llmport.engine.registry import LoadTarget, MemoryEstimate
from llmport.errors import InvalidModelFile, InvalidParameter, WorkerCrashed
from llmport.runtime.base import LOCAL_NODE
from llmport.runtime.local import LocalRuntime
from llmport.types import FinishReason, Output


async def start_client(model_path: Path, config: EngineConfig) -> EngineClient:
    target = LoadTarget(weight_files=[str(model_path)])
    unplanned = MemoryEstimate(0, 0, 0, 0)  # The local runtime places by nothing but itself.
    return await LocalRuntime(warm_spare=False).start(
        "llama_cpp", target, config, unplanned, LOCAL_NODE
    )


def with_client(
    model_path: Path, body: Callable[[EngineClient], Awaitable[Any]], **config: Any
) -> Any:
    async def main() -> Any:
        settings = EngineConfig(**{"max_num_kv_tokens": 4096, **config})
        client = await start_client(model_path, settings)
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


async def collect(client: EngineClient, rid: str, prompt: str, **params: Any) -> list[Output]:
    return [o async for o in client.generate(request(rid, prompt, **params))]


def test_worker_streams_what_the_in_process_engine_gives(tiny_model_path: Path) -> None:
    prompts = {str(i): f"stream {i} " * (i + 1) for i in range(16)}
    engine = make_engine(tiny_model_path)
    for rid, prompt in prompts.items():
        engine.add_request(request(rid, prompt, max_tokens=12, ignore_eos=True))
    expected = {rid: joined(outs) for rid, outs in run_all(engine).items()}
    engine.close()

    async def body(client: EngineClient) -> dict[str, tuple[str, list[int]]]:
        results = await asyncio.gather(
            *(collect(client, rid, p, max_tokens=12, ignore_eos=True) for rid, p in prompts.items())
        )
        return {rid: joined(outs) for rid, outs in zip(prompts, results, strict=True)}

    assert with_client(tiny_model_path, body) == expected


def test_cancelled_stream_is_aborted_in_the_worker(tiny_model_path: Path) -> None:
    async def body(client: EngineClient) -> None:
        stream = client.generate(request("long", "go on", max_tokens=100_000, ignore_eos=True))
        async for _ in stream:
            break
        await stream.aclose()  # what a client disconnect does
        stats = await client.stats()
        assert (stats.num_requests, stats.num_running, stats.num_waiting) == (0, 0, 0)
        # The worker still serves.
        outputs = await collect(client, "next", "hello", max_tokens=3, ignore_eos=True)
        assert outputs[-1].finish_reason is FinishReason.LENGTH

    with_client(tiny_model_path, body)


def test_bad_request_fails_alone(tiny_model_path: Path) -> None:
    async def body(client: EngineClient) -> None:
        with pytest.raises(InvalidParameter) as caught:
            await collect(client, "bad", "hello", temperature=-1.0)
        assert caught.value.param == "temperature"
        with pytest.raises(InvalidParameter, match="empty"):
            await collect(client, "empty", "")
        outputs = await collect(client, "ok", "hello", max_tokens=2, ignore_eos=True)
        assert outputs[-1].finish_reason is FinishReason.LENGTH

    with_client(tiny_model_path, body)


def test_killed_worker_ends_streams_with_an_error_naming_the_signal(tiny_model_path: Path) -> None:
    async def body(client: EngineClient) -> None:
        streams = [
            client.generate(request(str(i), "forever", max_tokens=100_000, ignore_eos=True))
            for i in range(3)
        ]
        for stream in streams:
            await anext(stream)
        assert client.pid is not None
        os.kill(client.pid, signal.SIGKILL)
        for stream in streams:
            with pytest.raises(WorkerCrashed, match="SIGKILL"):
                async for _ in stream:
                    pass
        assert not client.is_alive
        with pytest.raises(WorkerCrashed):
            await collect(client, "after", "hello")

    with_client(tiny_model_path, body)


def test_not_gguf_and_truncated_files_are_refused(tmp_path: Path, tiny_model_path: Path) -> None:
    from llmport.llm import LLM

    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"this is not a model at all" * 10)
    with pytest.raises(InvalidModelFile):
        LLM(not_gguf)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_model_path.read_bytes()[:-1000])
    with pytest.raises(InvalidModelFile):
        LLM(truncated)


def test_worker_reports_a_load_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)

    async def main() -> None:
        with pytest.raises(InvalidModelFile):
            await start_client(broken, EngineConfig())

    asyncio.run(main())
