"""Block-size sweep of the blocked engines: microseconds per step for several blocks of
one (d, N), timed in interleaved rounds in one process.  The figures in the docstrings of
``quadfast.default_block`` and ``quadfast.euclid.default_block`` come from this script.

Each round runs every block in turn for about ``--seconds`` (a whole number of blocks,
steps alone: ``run(steps, [])`` records nothing), after one warm-up round; the table gives
the minimum and the median over the rounds.  Batch 1, sampling included, width N = r,
lr * d = 1e-3, one thread unless ``--threads``; ``--batch B`` (Stiefel student) times
blocks of k steps of B samples each, block 1 being the sequential rank-B kernel.  Run with single-threaded NumPy:

    OMP_NUM_THREADS=1 python benchmarks/block_sweep.py 16384 1024 64,96,128,192
    OMP_NUM_THREADS=1 python benchmarks/block_sweep.py 16384 1024 96,128,192 --student euclid
"""
import argparse
import math
import time

import numpy as np

import quadfast as qf
from _interleave import LR_D, interleaved_times, stiefel_sim


def make(student, d, n, block, dtype="float64", threads=1, batch=1):
    if student == "stiefel":
        return stiefel_sim(d, n, dtype, threads, block=block, batch=batch)
    if batch != 1:
        raise ValueError("batch: the Euclidean blocked engine runs batch 1 only")
    teacher = qf.Teacher(qf.power_law_coef(n, 1.0), d=d)
    return qf.EuclideanSGD(teacher, n, lr=LR_D / d, seed=1, dtype=dtype, threads=threads, block=block)


def sweep(student, d, n, blocks, seconds=0.3, rounds=10, dtype="float64", threads=1, batch=1):
    """{block: (min, median) seconds per step}, interleaved rounds."""
    sims = {b: make(student, d, n, b, dtype, threads, batch) for b in blocks}
    steps = {}
    for b, s in sims.items():  # warm-up, and a first timing: whole blocks of about `seconds`
        s.run(b, [])
        reps = max(1, math.ceil(2e6 / (d * n * b * batch)))  # a few blocks at least, for tiny problems
        t0 = time.perf_counter()
        s.run(b * reps, [])
        per_step = (time.perf_counter() - t0) / (b * reps)
        steps[b] = b * max(1, math.ceil(seconds / per_step / b))
    times = interleaved_times({b: (lambda s=s, b=b: s.run(steps[b], [])) for b, s in sims.items()}, steps, rounds)
    for s in sims.values():
        if student == "stiefel":
            assert s.orth_error() < s.reortho_tol
        assert np.isfinite(s.W).all()
    return {b: (min(t), float(np.median(t))) for b, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("d", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("blocks", help="comma-separated steps per block, e.g. 64,96,128,192")
    ap.add_argument("--student", choices=["stiefel", "euclid"], default="stiefel")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1, help="samples per step (Stiefel student)")
    ap.add_argument("--seconds", type=float, default=0.3, help="length of one block's turn in a round")
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args(argv)
    blocks = [int(b) for b in a.blocks.split(",")]
    res = sweep(a.student, a.d, a.width, blocks, a.seconds, a.rounds, a.dtype, a.threads, a.batch)
    rule = (qf.default_block if a.student == "stiefel" else qf.euclid.default_block)(a.d, a.width, a.batch)
    print(f"{a.student} ({a.d}, {a.width}) batch {a.batch} {a.dtype}, {a.threads} thread(s), default block {rule}; "
          f"us per step, min / median of {a.rounds} rounds")
    print("| block | min | median |\n|---|---|---|")
    for b in blocks:
        us = [f"{x * 1e6:.0f}" if x >= 1e-4 else f"{x * 1e6:.3g}" for x in res[b]]
        print(f"| {b}{' (default)' if b == rule else ''} | {us[0]} | {us[1]} |")
    return res


if __name__ == "__main__":
    main()
