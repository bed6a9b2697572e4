"""Joining a Ray cluster as the server (a Ray driver), before anything of Ray is imported."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket

from llmport.errors import UnsupportedOption


def connect(address: str) -> None:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` made here) as a
    driver; UnsupportedOption with Ray's reason when that fails."""
    named = _named(address)
    _check_reachable(named)
    if is_loopback(named):
        # Ray rewrites a loopback address to this machine's outward IP, where a cluster
        # started on loopback does not listen: keep it on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise UnsupportedOption(
            "--ray: Ray is not installed (pip install 'llmport[ray]')"
        ) from None
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True,
                 namespace="llmport")  # fmt: skip
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UnsupportedOption(f"--ray {address}: cannot join the cluster ({error})") from None


def _check_reachable(address: str) -> None:
    """Fail in seconds with a plain reason: Ray itself retries a dead address for minutes."""
    if address == "auto":
        raise UnsupportedOption(
            "--ray auto: no Ray cluster was started on this machine (ray start --head), and "
            "RAY_ADDRESS is not set"
        )
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        raise UnsupportedOption(
            f"--ray {address}: no Ray cluster answers there ({error}); give the head node's "
            "host:port, as `ray start --head` printed it"
        ) from None


def _named(address: str) -> str:
    """The address ``auto`` stands for, where Ray would look for it: RAY_ADDRESS, else the
    file ``ray start`` writes on this machine."""
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:
        with open("/tmp/ray/ray_current_cluster", encoding="utf-8") as current:
            return current.read().strip()
    except OSError:
        return address


def is_loopback(address: str) -> bool:
    """Whether a Ray address (``host:port``) names this machine's loopback interface."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
