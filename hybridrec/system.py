"""Facts about the machine that components share."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def cpu_threads(requested: int | None = None) -> int:
    """Threads for a component's own parallel work: ``requested``, else the cores this
    process may use (its CPU affinity, which containers and ``taskset`` narrow)."""
    if requested:
        return int(requested)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: The folder where serving processes claim CPUs, one lock file per CPU (default: the
#: temporary folder's ``hybridrec-cpus``, shared by every server of the machine).
ENV_CPU_CLAIMS = "HYBRIDREC_CPU_CLAIMS"
_claimed: list[tuple[int, int]] = []  # (open lock file, CPU), kept for the process's life


def pinned_cpu() -> int | None:
    """The CPU ``pin_to_free_cpu`` pinned this process to, if it did."""
    return _claimed[0][1] if _claimed else None


def pin_to_free_cpu() -> int | None:
    """Pin this process (each of its threads, and those it starts later) to one CPU of its
    affinity that no other pinned hybridrec process holds; the CPU, or None when every one
    is taken, the platform cannot pin, or this process is already pinned.

    A request hops between threads (the event loop, a scoring thread, a scenario's
    isolation thread); on one CPU those hand-offs cost a fraction of what they cost across
    two (1.6 against 0.3 to 0.7 ms a request measured here). A server process is limited by
    the interpreter's lock to about one CPU's work anyway, so ``hybridrec serve --workers N``
    runs best as N processes on N CPUs. Claims are ``flock`` locks, which the kernel drops
    when a process ends, so a worker that restarts finds its CPU free again."""
    if _claimed or not hasattr(os, "sched_setaffinity"):
        return None
    import fcntl

    claims = Path(os.environ.get(ENV_CPU_CLAIMS)
                  or Path(tempfile.gettempdir()) / "hybridrec-cpus")
    try:
        claims.mkdir()
        claims.chmod(0o1777)  # every user's servers claim here (like /tmp itself)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except OSError:
        return None
    for cpu in allowed:
        try:  # read-only is enough for flock, and works on another user's lock file
            fd = os.open(claims / f"cpu-{cpu}.lock", os.O_RDONLY | os.O_CREAT, 0o444)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _pin_threads(cpu):
            _claimed.append((fd, cpu))
            return cpu
        os.close(fd)  # cannot pin here: leave the CPU to another process
        return None
    return None


def _pin_threads(cpu: int) -> bool:
    """Pin every thread of this process to ``cpu`` (those started before this call too,
    where ``/proc`` lists them); whether the calling thread is pinned."""
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]  # no /proc: this thread, and those it starts from now on
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(task, {cpu})
    try:
        return os.sched_getaffinity(0) == {cpu}
    except OSError:
        return False
