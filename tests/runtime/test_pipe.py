"""AsyncPipe: whole messages of any size, a full pipe waits, only a closed one ends."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import pytest

from llmport.runtime.pipe import AsyncPipe, PipeClosed


def test_messages_larger_than_the_socket_buffer_arrive_whole_and_in_order() -> None:
    ours, theirs = multiprocessing.Pipe()
    sizes = [0, 1, 5 << 20, 3, 1 << 20, 70_000]  # 5 MiB: far beyond the socket's buffer.
    received: list[bytes] = []

    def worker() -> None:  # A slow reader that starts late: the pipe fills meanwhile.
        for _ in sizes:
            received.append(theirs.recv_bytes())
        theirs.send_bytes(b"done")

    async def main() -> list[bytes]:
        replies: list[bytes] = []
        done = asyncio.Event()

        def on_message(data: bytes) -> None:
            replies.append(data)
            done.set()

        pipe = AsyncPipe(ours, on_message, lambda: None)
        for i, size in enumerate(sizes):
            pipe.send(bytes([i]) * size)  # Never blocks, never raises on a full pipe.
        assert pipe.num_pending_bytes > 0
        thread = threading.Thread(target=worker)
        thread.start()
        await asyncio.wait_for(done.wait(), 30)
        thread.join()
        assert pipe.num_pending_bytes == 0
        pipe.close()
        return replies

    assert asyncio.run(main()) == [b"done"]
    assert [len(m) for m in received] == sizes
    assert all(m == bytes([i]) * len(m) for i, m in enumerate(received))


def test_many_messages_in_one_read_are_split_and_a_torn_one_waits_for_its_rest() -> None:
    ours, theirs = multiprocessing.Pipe()

    async def main() -> list[bytes]:
        got: list[bytes] = []
        pipe = AsyncPipe(ours, got.append, lambda: None)
        for i in range(100):
            theirs.send_bytes(str(i).encode())
        big = b"x" * (3 << 20)  # Arrives over several reads.
        sender = threading.Thread(target=theirs.send_bytes, args=(big,))
        sender.start()
        for _ in range(1000):
            if len(got) == 101:
                break
            await asyncio.sleep(0.01)
        sender.join()
        pipe.close()
        return got

    got = asyncio.run(main())
    assert got[:100] == [str(i).encode() for i in range(100)]
    assert got[100] == b"x" * (3 << 20)


def test_the_other_end_closing_ends_the_channel_once() -> None:
    ours, theirs = multiprocessing.Pipe()

    async def main() -> int:
        closed = asyncio.Event()
        calls = []

        def on_closed() -> None:
            calls.append(1)
            closed.set()

        pipe = AsyncPipe(ours, lambda _: None, on_closed)
        theirs.close()
        await asyncio.wait_for(closed.wait(), 5)
        with pytest.raises(PipeClosed):
            pipe.send(b"late")
        pipe.close()
        return len(calls)

    assert asyncio.run(main()) == 1
