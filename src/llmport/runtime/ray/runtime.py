"""RayRuntime: each model's worker is a Ray actor on the node the manager chose.

Ray does placement (a hard node affinity), lifecycle and health; the tokens go over the
actor's own authenticated socket, so streaming costs what a local worker's pipe costs.
A heartbeat of our own (a Ray call every second) catches a hung node within
``heartbeat_timeout`` seconds, long before Ray's health check; a dead node ends its
sockets within about a second. A node that lost a worker is left out of placement until
a probe task answers on it again (a healthy node whose worker crashed, or a node that
came back), so the next request for a lost model goes to a surviving node even while
Ray still believes the lost one alive. (Ray is imported where it is used, so that every
module of llmport imports without the ray extra.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from multiprocessing.connection import Client, Connection
from typing import Any

from pydantic import BaseModel

from llmport.engine.registry import LoadTarget, MemoryEstimate
from llmport.errors import NodeUnavailable
from llmport.runtime.base import Node
from llmport.runtime.client import PipeEngineClient, load_over
from llmport.runtime.ray.actor import WorkerActor, set_nodelay
from llmport.runtime.ray.nodes import nodes_from_ray

logger = logging.getLogger(__name__)

#: Seconds between heartbeats, and between probes of a distrusted node.
HEARTBEAT_SECONDS = 1.0
PROBE_SECONDS = 3.0
#: Seconds a new actor may take to start listening (Ray starts a process for it).
START_SECONDS = 60.0


class RayRuntime:
    """Starts workers as actors on a joined cluster (``cluster.connect`` first)."""

    def __init__(self, heartbeat_timeout: float = 5.0) -> None:
        import ray

        self._actor_class = ray.remote(WorkerActor)
        self._probe = ray.remote(_probe)
        self.heartbeat_timeout = heartbeat_timeout
        #: Nodes that lost a worker: probed until they answer before they are used again.
        self._suspects: set[str] = set()
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._heartbeats: set[asyncio.Task[None]] = set()

    async def nodes(self) -> list[Node]:
        import ray

        entries = await asyncio.to_thread(ray.nodes)
        return [node for node in nodes_from_ray(entries) if node.id not in self._suspects]

    def prepare(self) -> None:
        """Nothing to keep warm: an actor starts where the model goes."""

    async def start(
        self, kind: str, target: LoadTarget, config: BaseModel, memory: MemoryEstimate, node: Node
    ) -> PipeEngineClient:
        import ray

        actor = self._actor_class.options(
            scheduling_strategy=_pinned(node), num_cpus=0, max_concurrency=4
        ).remote(logging.getLogger().getEffectiveLevel())
        authkey = secrets.token_bytes(32)
        try:
            host, port = await asyncio.wait_for(_awaitable(actor.listen.remote(authkey)),
                                                START_SECONDS)  # fmt: skip
            handle = ActorHandle(actor, actor.serve.remote(), node, self)
            conn = await asyncio.to_thread(_connect, (host, port), authkey)
        except (TimeoutError, OSError, ray.exceptions.RayError) as error:
            ray.kill(actor, no_restart=True)
            self.distrust(node)
            raise NodeUnavailable(
                f"node {node.name} could not start a worker ({type(error).__name__}: {error})"
            ) from None
        client = await load_over(conn, handle, kind, target, config)
        task = asyncio.get_running_loop().create_task(handle.heartbeat(client))
        self._heartbeats.add(task)
        task.add_done_callback(self._heartbeats.discard)
        return client

    def distrust(self, node: Node) -> None:
        """Leave ``node`` out of placement until a probe answers there."""
        logger.warning("node %s lost a worker: not used until it answers again", node.name)
        self._suspects.add(node.id)
        if node.id not in self._probes:
            self._probes[node.id] = asyncio.get_running_loop().create_task(self._retry(node))

    async def _retry(self, node: Node) -> None:
        """Probe ``node`` until it answers (trusted again) or Ray drops it."""
        import ray

        try:
            while True:  # A healthy node (only its worker failed) answers the first probe.
                alive = {n.id for n in nodes_from_ray(await asyncio.to_thread(ray.nodes))}
                if node.id not in alive:
                    return  # Gone for good: a node that restarts comes back with a new id.
                probe = self._probe.options(scheduling_strategy=_pinned(node), num_cpus=0)
                probe = probe.remote()
                with contextlib.suppress(TimeoutError, ray.exceptions.RayError):
                    await asyncio.wait_for(_awaitable(probe), PROBE_SECONDS)
                    logger.info("node %s answers again", node.name)
                    self._suspects.discard(node.id)
                    return
                await asyncio.sleep(PROBE_SECONDS)
        finally:
            self._probes.pop(node.id, None)

    async def close(self) -> None:
        import ray

        for task in [*self._probes.values(), *self._heartbeats]:
            task.cancel()
        ray.shutdown()


class ActorHandle:
    """A worker actor, as its engine client needs it (a WorkerHandle)."""

    pid = None

    def __init__(self, actor: Any, serving: Any, node: Node, runtime: RayRuntime) -> None:
        self._actor = actor
        #: The actor's ``serve`` call: it ends when the actor does.
        self._serving = serving
        self._node = node
        self.node = node.name
        self._runtime = runtime
        self._gone = False
        self._reason = "ended (its connection closed)"

    def is_alive(self) -> bool:
        return not self._gone

    def join(self, timeout: float) -> None:
        """Wait until the actor has ended (its process, and its memory, gone)."""
        import ray

        try:
            ray.get(self._serving, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            return
        except ray.exceptions.RayError:
            pass  # Its death is the answer: ended by Ray, by a kill or with its node.
        self._gone = True

    def kill(self) -> None:
        import ray

        ray.kill(self._actor, no_restart=True)

    def death(self) -> str:
        return self._reason

    def lost(self) -> None:
        self._runtime.distrust(self._node)

    async def heartbeat(self, client: PipeEngineClient) -> None:
        """Ping the actor every second; one that does not answer in time is lost."""
        import ray

        timeout = self._runtime.heartbeat_timeout
        while client.is_alive:
            try:
                await asyncio.wait_for(_awaitable(self._actor.ping.remote()), timeout)
            except TimeoutError:
                client.lost(f"the model's worker on node {self.node} stopped answering (no "
                            f"heartbeat for {timeout:g} s)")  # fmt: skip
                return
            except ray.exceptions.RayActorError as error:
                self._reason = f"is gone ({type(error).__name__})"
                if client.is_alive:
                    client.lost(f"the model's worker on node {self.node} {self._reason}")
                return
            await asyncio.sleep(HEARTBEAT_SECONDS)


def _pinned(node: Node) -> Any:
    """Ray's scheduling strategy for "on this node and nowhere else"."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node.id, soft=False)


async def _awaitable(ref: Any) -> Any:
    """An ObjectRef awaited on the running loop."""
    return await ref


def _connect(address: tuple[str, int], authkey: bytes) -> Connection:
    conn = Client(address, authkey=authkey)
    set_nodelay(conn)
    return conn


def _probe() -> bool:
    """Runs on a distrusted node: answering at all is the proof it works."""
    return True
