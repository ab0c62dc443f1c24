"""The targets of issue 4, each measured as a ratio of two (or three) implementations
timed in interleaved rounds in the same process.

Why interleaved: on a shared VM the speed of a core drifts by 20-40% within seconds (the
2-core Ice Lake VM of the README: NumPy's one-thread dgemm ranged from 44 to 69 GFlop/s
over one minute, sampled every 2 s).  pytest-benchmark times all rounds of one test before
the next, so two implementations timed apart can be measured in different phases of the
drift.  Here the implementations of one target take turns, round after round, and each
figure is the minimum over its rounds (its fastest phase), so both sides of a ratio see
the same phases.

Every case also checks its result (orthonormality, bit-identity across threads, the
normals' moments).  Run with single-threaded NumPy, as the other benchmarks:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 pytest benchmarks/bench_targets.py

The table (printed, and written to benchmarks/results/<name>_targets.md, <name> from
QUADFAST_BENCH_NAME or "latest") lists every measured ratio beside its target; `--quick`
runs one warm-up and one timed round of each case at small sizes (correctness only, as
CI does) and writes <name>_targets_quick.md instead.
"""
import math
import os
from pathlib import Path

import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref
from quadfast._ext import core as _core

from _interleave import LR_D, interleaved
from _interleave import stiefel_sim as _sim

ROWS = []  # (target, measured, goal, detail), printed at the end of the module


def _quick(request):
    return request.config.getoption("--quick")


def _blocks(sim, budget):
    """Steps per call: whole blocks, at least 8, about budget / (d N) steps, and at least
    ``sim.split_period``.  Where the engine keeps W factored (float64, d >= 16 N) that is
    its formation period, 16 N steps rounded up to blocks: a call forms W when it returns
    (2 d N^2 flops), which a long run pays once per period, and the progress chunks of
    ``run`` end on multiples of the period.  A shorter call would time the formation
    of every call (at (16384, 1024) the form is not used for calls under 2 N steps)."""
    d, n = sim.W.shape
    return max(max(8, -(-int(budget // (d * n)) // sim.block)) * sim.block, sim.split_period)


def _numpy_rank_one(d, n, steps):
    teacher = qf.Teacher(qf.power_law_coef(n, 1.0), d=d)
    W = qf.haar_stiefel(d, n, seed=1)
    rng = np.random.default_rng(1)
    return W, (lambda: ref.run_rank_one(W, teacher, steps, LR_D / d, rng))


def _threaded_and_numpy(d, n, budget=4e8):
    """quadfast on 1 and 2 threads (warmed up by one block) and a NumPy rank-one loop from
    the same start: (callables, units, the two simulators, NumPy's W)."""
    sims = {t: _sim(d, n, threads=t) for t in (1, 2)}
    steps = _blocks(sims[1], budget)
    for s in sims.values():
        s.run(s.block)
    np_steps = max(1, int(1e8 // (d * n)))
    W, np_run = _numpy_rank_one(d, n, np_steps)
    fns = {"q1": lambda: sims[1].run(steps, []), "q2": lambda: sims[2].run(steps, []), "numpy": np_run}
    return fns, {"q1": steps, "q2": steps, "numpy": np_steps}, sims, W


def _row(target, measured, goal, detail):
    ROWS.append((target, measured, goal, detail))


def test_extensive_width(request):
    """(16384, 1024) float64, batch 1, sampling included: quadfast on 1 and 2 threads
    against the NumPy rank-one step, the NumPy reference and NumPy's dgemm rate."""
    d, n = (1024, 64) if _quick(request) else (16384, 1024)
    fns, units, sims, W = _threaded_and_numpy(d, n)
    teacher = qf.Teacher(qf.power_law_coef(n, 1.0), d=d)
    holder = {"W": qf.haar_stiefel(d, n, seed=1)}
    rng = np.random.default_rng(1)

    def reference():
        holder["W"] = ref.run_reference(holder["W"], teacher, 1, LR_D / d, rng)

    m = 512 if _quick(request) else 2048
    a, b = np.random.default_rng(0).standard_normal((2, m, m))
    fns.update(reference=reference, dgemm=lambda: a @ b)
    units.update(reference=1, dgemm=2.0 * m**3)
    # the factored form on request (off by default above width 128: its 3 N^2 of memory),
    # in calls of one formation period from a period multiple
    fact = _sim(d, n)
    fact._kernel.factored = True
    fsteps = fact.split_period
    fact.run(fsteps)
    fns.update(q1f=lambda: fact.run(fsteps, []))
    units.update(q1f=fsteps)
    t = interleaved(fns, units, 1 if _quick(request) else 6)
    for s in list(sims.values()) + [fact]:
        assert s.orth_error() < s.reortho_tol
    assert fact._kernel.formations >= 1 + (not _quick(request))
    assert np.max(np.abs(W.T @ W - np.eye(n))) < 1e-9
    gflops = 6.0 * d * n / t["q1"] / 1e9
    dgemm = 1e-9 / t["dgemm"]
    tag = f"({d}, {n}) float64"
    _row(f"{tag}, 1 thread: vs NumPy rank-one", t["numpy"] / t["q1"], 40,
         f"{t['q1']:.3g} s against {t['numpy']:.3g} s per step")
    _row(f"{tag}, 2 threads: vs NumPy rank-one (1 thread)", t["numpy"] / t["q2"], None, f"{t['q2']:.3g} s per step")
    _row(f"{tag}, 1 thread: vs reference", t["reference"] / t["q1"], 1000, f"reference {t['reference']:.3g} s per step")
    _row(f"{tag}, 1 thread: of dgemm (6 d N flops)", gflops / dgemm, 0.5,
         f"{gflops:.1f} against {dgemm:.1f} GFlop/s (NumPy {m}^3)")
    _row(f"{tag}: 2 threads vs 1", t["q1"] / t["q2"], 1.7, "same run")
    _row(f"{tag}, 1 thread, factored form requested: vs NumPy rank-one", t["numpy"] / t["q1f"], None,
         f"{t['q1f']:.3g} s per step, {fsteps} steps per call, {fact._kernel.formations} formations")
    _row(f"{tag}, 1 thread: factored form requested vs default", t["q1"] / t["q1f"], None, "same run")


def test_threads_bit_identical(request):
    """The 1-to-2-thread target asks for the same bits: a few blocks of both."""
    d, n = (1024, 64) if _quick(request) else (16384, 1024)
    sims = [_sim(d, n, threads=t) for t in (1, 2)]
    for s in sims:
        s.run(3 * s.block)
    assert np.array_equal(sims[0].W, sims[1].W)


def test_width_64(request):
    """(4096, 64) float64: quadfast on 1 and 2 threads against the NumPy rank-one step."""
    d, n = (1024, 32) if _quick(request) else (4096, 64)
    fns, units, sims, W = _threaded_and_numpy(d, n)
    t = interleaved(fns, units, 1 if _quick(request) else 12)
    for s in sims.values():
        assert s.orth_error() < s.reortho_tol
    assert np.max(np.abs(W.T @ W - np.eye(n))) < 1e-9
    _row(f"({d}, {n}) float64, 1 thread: vs NumPy rank-one", t["numpy"] / t["q1"], 15,
         f"{t['q1']:.3g} s against {t['numpy']:.3g} s per step")
    _row(f"({d}, {n}) float64, 2 threads: vs NumPy rank-one (1 thread)", t["numpy"] / t["q2"], None,
         f"{t['q2']:.3g} s per step")


def test_float32(request):
    """float32 against float64 at (16384, 1024), one thread."""
    d, n = (1024, 64) if _quick(request) else (16384, 1024)
    sims = {dt: _sim(d, n, dtype=dt) for dt in ("float32", "float64")}
    steps = _blocks(sims["float64"], 4e8)
    for s in sims.values():
        s.run(s.block)
    t = interleaved({k: (lambda s=s: s.run(steps, [])) for k, s in sims.items()}, {k: steps for k in sims},
                    1 if _quick(request) else 4)
    assert sims["float32"].orth_error() < 1e-5
    _row(f"({d}, {n}), 1 thread: float32 vs float64", t["float64"] / t["float32"], 1.6,
         f"{t['float32']:.3g} against {t['float64']:.3g} s per step")


def test_width_one(request):
    """Width 1 at d = 16384: a whole step against NumPy drawing the d normals of a sample."""
    d = 1024 if _quick(request) else 16384
    sims = {t: _sim(d, 1, threads=t) for t in (1, 2)}
    steps = _blocks(sims[1], 2e8)
    for s in sims.values():
        s.run(s.block)
    g = np.random.default_rng(0)
    out = np.empty(d)
    reps = 200

    def draws():
        for _ in range(reps):
            g.standard_normal(out=out)

    t = interleaved({"q1": lambda: sims[1].run(steps, []), "q2": lambda: sims[2].run(steps, []), "numpy": draws},
                    {"q1": steps, "q2": steps, "numpy": reps}, 1 if _quick(request) else 12)
    for s in sims.values():
        assert s.orth_error() < s.reortho_tol
    assert abs(out.mean()) < 6 / np.sqrt(d)
    _row(f"width 1, d = {d}, 1 thread: step / NumPy's d normals", t["q1"] / t["numpy"], "<= 0.33",
         f"{t['q1']:.3g} against {t['numpy']:.3g} s")
    _row(f"width 1, d = {d}, 2 threads: step / NumPy's d normals", t["q2"] / t["numpy"], None, f"{t['q2']:.3g} s")
    _row(f"width 1, d = {d}: 2 threads vs 1", t["q1"] / t["q2"], 1.7, "same run")


@pytest.mark.parametrize("shape", [(64, 1 << 14), (1, 1 << 14), (1, 1 << 20)], ids=["64x16384", "1x16384", "1x2^20"])
def test_sampler(request, shape):
    """ns per normal, quadfast (float64) against numpy.random.Generator.standard_normal,
    one thread.  64 x 16384 and 1 x 16384 use the shared table of position hashes (the
    engine's path); 1 x 2^20 hashes positions on the fly."""
    if _quick(request):
        shape = (2, 1 << 10)
    out_q = np.empty(shape)
    out_n = np.empty(shape).reshape(-1)
    gen = np.random.default_rng(42)
    t = interleaved({"quadfast": lambda: _core.fill_normals(out_q, 42, 0),
                     "numpy": lambda: gen.standard_normal(out=out_n)},
                    {"quadfast": out_q.size, "numpy": out_n.size}, 1 if _quick(request) else 40)
    for x in (out_q.ravel(), out_n):
        assert abs(x.mean()) < 6 / math.sqrt(x.size) and abs(x.var() - 1) < 6 * math.sqrt(2 / x.size)
    _row(f"sampler, {shape[0]} x {shape[1]}: vs NumPy, per core", t["numpy"] / t["quadfast"], 5,
         f"{t['quadfast'] * 1e9:.2f} against {t['numpy'] * 1e9:.2f} ns per normal")


def test_zz_table(request):
    """Prints and writes the table of this module's measurements (runs last)."""
    if not ROWS:
        pytest.skip("nothing measured")
    from quadfast.results import machine_info

    info = machine_info()
    blas = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"))
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, extension {info['extension']}, "
             f"sampler {info['sampler_isa']}; NumPy's BLAS threads: {blas}"
             + (" (--quick: smoke sizes, one round)" if _quick(request) else ""),
             "", "| target | measured | goal | met | detail |", "|---|---|---|---|---|"]
    for target, measured, goal, detail in ROWS:
        if goal is None:
            met, goal_s = "-", "-"
        elif isinstance(goal, str):  # "<= x"
            met, goal_s = ("yes" if measured <= float(goal.split()[-1]) else "no"), goal
        else:
            met, goal_s = ("yes" if measured >= goal else "no"), f">= {goal:g}"
        fmt = f"{measured:.2f}" if measured < 10 else f"{measured:.1f}"
        lines.append(f"| {target} | {fmt} | {goal_s} | {met} | {detail} |")
    text = "\n".join(lines)
    print("\n\nissue-4 targets, interleaved rounds in this run\n" + text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    suffix = "_targets_quick.md" if _quick(request) else "_targets.md"
    (out / f"{os.environ.get('QUADFAST_BENCH_NAME', 'latest')}{suffix}").write_text(text + "\n")
