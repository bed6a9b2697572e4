"""The memory budget models must fit, and how sizes are written and read."""

from __future__ import annotations

import os
import re

MiB = 1 << 20
GiB = 1 << 30
#: The default budget: this share of the memory available when the server starts.
DEFAULT_BUDGET_SHARE = 0.8

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo, or total physical memory where that is missing."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget_bytes() -> int:
    return int(DEFAULT_BUDGET_SHARE * available_memory_bytes())


def parse_size(text: str) -> int:
    """Bytes from ``"8GiB"``, ``"512M"``, ``"1.5g"`` or a plain byte count (powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use bytes or a unit: 512MiB, 8GiB)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def format_size(num_bytes: int) -> str:
    return f"{num_bytes / GiB:.2f} GiB" if num_bytes >= GiB else f"{num_bytes / MiB:.0f} MiB"
