"""WorkerHandle: what an engine client needs of the thing its worker runs in.

The pipe carries every request and output; the handle answers only what a pipe cannot:
is the worker still there, wait for it to exit, end it by force, and say how it ended.
A local process and a Ray actor on another node each provide one, so one engine client
serves both.
"""

from __future__ import annotations

import signal
from multiprocessing.process import BaseProcess
from typing import Protocol


class WorkerHandle(Protocol):
    #: Where the worker runs, as ps shows it (``local``, or a cluster node's name).
    node: str

    @property
    def pid(self) -> int | None:
        """Its process id when it runs on this machine (None on another node)."""
        ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for it to exit (blocking: call from a thread)."""
        ...

    def kill(self) -> None:
        """End it now; its memory is freed when ``join`` returns with it gone."""
        ...

    def death(self) -> str:
        """How it ended, for an error message: 'was killed by SIGKILL'."""
        ...

    def lost(self) -> None:
        """Its client gave up on it (the channel ended, or it stopped answering) while it
        was not being closed; a cluster runtime distrusts its node for a while."""
        ...


class ProcessHandle:
    """A worker process spawned on this machine."""

    node = "local"

    def __init__(self, process: BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def join(self, timeout: float) -> None:
        self._process.join(timeout)

    def kill(self) -> None:
        self._process.kill()

    def death(self) -> str:
        code = self._process.exitcode
        if code is None:
            return "stopped answering"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def lost(self) -> None:
        """Nothing to distrust: the next load spawns a fresh process on this machine."""
