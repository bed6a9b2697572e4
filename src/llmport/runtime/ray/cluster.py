"""Joining a Ray cluster as the server (a Ray driver), before anything of Ray is imported."""

from __future__ import annotations

import ipaddress
import logging
import os

from llmport.errors import UnsupportedOption


def connect(address: str) -> None:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` made here) as a
    driver; UnsupportedOption with Ray's reason when that fails."""
    if is_loopback(_named(address)):
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
