"""How many PyTorch CPU threads a command uses: ``--threads N``, ``LEVIATHAN_THREADS``, or a
default that looks at how busy the machine is when the command starts.

PyTorch's OpenMP threads wait for each other at the end of every parallel op. When another
process holds one of the cores, the thread that shares it falls behind and the others spin
waiting for it: on this project's 2-core machine, two threads per process ran the quick
start several times slower than one thread when a second job kept one core busy
(``benchmarks/threads_quickstart.py`` measures it). So the default takes as many threads as
there are cores left idle at start (at least one), and a sweep or a second job should pass
``--threads 1``.
"""

from __future__ import annotations

import os
import time

THREADS_ENV = "LEVIATHAN_THREADS"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields), idle


def busy_cores(sample_s: float = 0.25) -> float:
    """Cores kept busy by other processes right now, from /proc/stat over ``sample_s``
    (the 1-minute load average where /proc is missing; it lags behind a job that just started)."""
    first = _cpu_times()
    if first is None:
        try:
            return float(os.getloadavg()[0])
        except OSError:  # pragma: no cover
            return 0.0
    time.sleep(sample_s)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return 0.0
    return (1.0 - idle / total) * (os.cpu_count() or 1)


def default_threads() -> int:
    """As many threads as cores left idle by other processes (rounded), at least one."""
    cores = usable_cores()
    return max(1, min(cores, cores - round(busy_cores())))


def resolve_threads(threads: int | None = None) -> int:
    """``threads``, else ``$LEVIATHAN_THREADS``, else ``default_threads()``; raises ValueError
    naming the bad value for anything but a positive integer."""
    source = "--threads"
    if threads is None and os.environ.get(THREADS_ENV, "").strip():
        threads, source = os.environ[THREADS_ENV].strip(), THREADS_ENV
    if threads is None:
        return default_threads()
    try:
        n = int(threads)
    except (TypeError, ValueError):
        raise ValueError(f"{source}={threads!r} is invalid: must be a positive integer") from None
    if n < 1 or isinstance(threads, bool):
        raise ValueError(f"{source}={threads!r} is invalid: must be a positive integer")
    return n


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's CPU thread count for this process (see ``resolve_threads``); returns it.

    Notebooks call ``set_threads()`` in their first cell; the commands call it with ``--threads``.
    """
    import torch

    n = resolve_threads(threads)
    torch.set_num_threads(n)
    return n
