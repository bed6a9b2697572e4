"""A uvicorn server whose shutdown drains instead of cutting connections.

On SIGTERM or Ctrl-C uvicorn stops accepting and waits for open requests; this
one also has the manager refuse new leases at once (503), and when the grace
period ends, ends every request still running with a clean ``server_shutting_down``
error (streams get it as their last event) so the wait finishes, then the app's
shutdown closes every worker.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from llmport.manager.manager import ModelManager


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, manager: ModelManager, grace_seconds: float):
        super().__init__(config)
        self._manager = manager
        self._grace_seconds = grace_seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._manager.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self._grace_seconds, self._manager.end_requests)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()
