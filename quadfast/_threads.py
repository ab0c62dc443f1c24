"""Threading policy: how many threads a quadfast kernel uses.

Decisions live in Python; kernels get an explicit thread count.  ``threads=None`` means
the usual environment variables, first set wins: ``QUADFAST_NUM_THREADS``,
``OMP_NUM_THREADS``, then the number of CPUs this process may run on.  Kernels split
their work into slabs fixed by the problem size alone and reduce them in a fixed order,
so results are bit-identical for every thread count.
"""
from __future__ import annotations

import os

from . import _validate as V

_ENV = ("QUADFAST_NUM_THREADS", "OMP_NUM_THREADS")


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads from the environment (QUADFAST_NUM_THREADS, OMP_NUM_THREADS) or the CPUs."""
    for name in _ENV:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        first = raw.split(",")[0]  # OMP_NUM_THREADS may list nested levels: "4,2"
        try:
            n = int(first)
        except ValueError:
            raise ValueError(f"{name}: expected a positive integer, got {raw!r}") from None
        if n < 1:
            raise ValueError(f"{name}: expected a positive integer, got {raw!r}")
        return n
    return available_cpus()


def resolve(threads, name: str = "threads") -> int:
    """``threads`` as a positive int; None means :func:`default_threads`."""
    if threads is None:
        return default_threads()
    return V.positive_int(threads, name, maximum=4096)
