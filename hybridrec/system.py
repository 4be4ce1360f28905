"""Facts about the machine that components share."""

from __future__ import annotations

import os


def cpu_threads(requested: int | None = None) -> int:
    """Threads for a component's own parallel work: ``requested``, else the cores this
    process may use (its CPU affinity, which containers and ``taskset`` narrow)."""
    if requested:
        return int(requested)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
