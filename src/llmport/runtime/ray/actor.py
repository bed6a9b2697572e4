"""The Ray actor a model's worker runs in on a cluster node.

Ray places it and watches it; the tokens do not go through Ray. The actor opens a
listener on its node (authenticated with a key the server hands it through Ray, so only
that server can connect) and runs the local worker's loop over that connection: the
server's engine client talks to it exactly as to a local worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from multiprocessing.connection import Connection, Listener

from llmport.runtime.worker import run_worker

#: Seconds the actor waits for the server to connect before it gives up and exits.
ACCEPT_SECONDS = 60.0


class WorkerActor:
    """Wrapped with ``ray.remote`` by the Ray runtime (so this module needs no Ray)."""

    def __init__(self, log_level: int) -> None:
        self._log_level = log_level
        self._listener: Listener | None = None
        _normal_priority()

    def listen(self, authkey: bytes) -> tuple[str, int]:
        """Listen on this node's address for the server (``serve`` then accepts it)."""
        from ray.util import get_node_ip_address

        self._listener = Listener((get_node_ip_address(), 0), authkey=authkey)
        host, port = self._listener.address
        return str(host), int(port)

    def serve(self) -> None:
        """Accept the server and run the worker until it shuts down; then the actor ends
        (the caller sees the actor's death as this call's result)."""
        from ray.actor import exit_actor

        listener = self._listener
        assert listener is not None, "listen comes first"
        timer = threading.Timer(ACCEPT_SECONDS, lambda: os._exit(1))  # Nobody came.
        timer.start()
        try:
            conn = listener.accept()
        finally:
            timer.cancel()
            listener.close()
        set_nodelay(conn)
        # vLLM must not share a process with llama.cpp: no kind is imported before Load.
        run_worker(conn, self._log_level, warm_up=False, exit_process=False)
        exit_actor()

    def ping(self) -> int:
        """The heartbeat: answered beside ``serve`` (whose steps release the GIL)."""
        return os.getpid()


def _normal_priority() -> None:
    """Ray starts workers at niceness 15 (below its own daemons); a model's worker serves
    requests and must not lose its CPU to every other process on the node."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except PermissionError:
        logging.getLogger(__name__).warning(
            "this worker runs at niceness %d (Ray's default for workers) and may not lower "
            "it; start the node with RAY_worker_niceness=0 ray start ...",
            os.getpriority(os.PRIO_PROCESS, 0),
        )


def set_nodelay(conn: Connection) -> None:
    """Send each message at once: Nagle's algorithm stalls token bursts by ~40 ms."""
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
