"""The memory budget models must fit on this machine."""

from __future__ import annotations

import os

#: The default budget: this share of the memory available when the server starts.
DEFAULT_BUDGET_SHARE = 0.8


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
