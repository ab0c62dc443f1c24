"""Shared by bench_targets.py and block_sweep.py: timing in interleaved rounds, and the
Stiefel simulator both time.

Why interleaved: on a shared VM a core's speed drifts by 20-40% within seconds, so the
implementations being compared take turns, round after round, in one process.
"""
import math
import time

import quadfast as qf

LR_D = 1e-3  # lr * d of every timed simulator


def interleaved_times(fns, units, rounds):
    """Seconds per unit of each callable in each of `rounds` rounds, in which every
    callable runs once, in turn (after one warm-up round): {key: [seconds, ...]}."""
    times = {k: [] for k in fns}
    for r in range(rounds + 1):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            dt = time.perf_counter() - t0
            if r > 0:
                times[k].append(dt / units[k])
    return times


def interleaved(fns, units, rounds):
    """Seconds per unit of each callable: the minimum over its rounds (its fastest phase)."""
    return {k: min(t, default=math.inf) for k, t in interleaved_times(fns, units, rounds).items()}


def stiefel_sim(d, n, dtype="float64", threads=1, **kw):
    """StiefelSGD at (d, N = r), lambda_j ~ j^-1, lr d = LR_D, Haar start, seed 1."""
    teacher = qf.Teacher(qf.power_law_coef(n, 1.0), d=d)
    return qf.StiefelSGD(teacher, n, lr=LR_D / d, W0=qf.haar_stiefel(d, n, seed=1), seed=1, dtype=dtype,
                         threads=threads, **kw)
