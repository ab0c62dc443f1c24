"""Seconds per Stiefel SGD step, sampling included: the quadfast kernel (its default,
the blocked exact engine for batch 1, and the sequential one-pass kernel), the same
closed-form rank-one step written in NumPy, and the NumPy reference (explicit Theta,
projected gradient, eigh polar every step).  Batch 1, width N = r, float64.

quadfast is timed with ``run(steps, record=[])``, the steps alone, as the NumPy loops are
(bench_engine.py::test_record_point times a record point).

Run:  pytest benchmarks/bench_stiefel.py            (full grid)
      pytest benchmarks/bench_stiefel.py --quick    (smallest sizes)
"""
import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref

GRID = [(d, n) for d in (1024, 4096, 16384) for n in (32, 256, 1024)] + [(4096, 64)]
# lr*d = 1e-3, the regime in which features are learned at N ~ 50-1000 (README, "Step
# size and width").  At lr*d = 0.05 and N = d = 1024 a step changes W by O(1) in the
# drift sense (|cp| ||z||^2 ~ 2), and the drift control re-orthonormalises nearly every step.
LR_D = 1e-3


def _cases(config):
    return [(1024, 32)] if config.getoption("--quick") else GRID


def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("size", cases, ids=[f"d{d}-N{n}" for d, n in cases])


def _steps(d, n, budget):
    """Steps per round so that a round does about `budget` multiply-adds."""
    return int(max(1, min(20000, budget // (d * n))))


def _setup(d, n):
    teacher = qf.Teacher(qf.power_law_coef(n, 1.0), d=d)
    return teacher, qf.haar_stiefel(d, n, seed=1)


def test_quadfast(benchmark, size, record_per_step):
    d, n = size
    teacher, W0 = _setup(d, n)
    sim = qf.StiefelSGD(teacher, n, lr=LR_D / d, W0=W0, seed=1)
    # whole blocks (the default engine is blocked: MODEL.md §3), at least four per round
    steps = max(8, -(-_steps(d, n, 4e8) // sim.block)) * sim.block  # >= 8 blocks per call
    sim.run(sim.block)
    benchmark.group = f"stiefel d={d} N={n}"
    benchmark.pedantic(sim.run, args=(steps, []), rounds=5, iterations=1, warmup_rounds=1)
    assert sim.orth_error() < 1e-12
    record_per_step((d, n), "quadfast", benchmark, steps)


def test_quadfast_sequential(benchmark, size, record_per_step):
    """The sequential one-pass kernel (block=1), for comparison with the blocked default."""
    d, n = size
    teacher, W0 = _setup(d, n)
    sim = qf.StiefelSGD(teacher, n, lr=LR_D / d, W0=W0, seed=1, block=1)
    steps = _steps(d, n, 2e8)
    sim.run(1)
    benchmark.group = f"stiefel d={d} N={n}"
    benchmark.pedantic(sim.run, args=(steps, []), rounds=3, iterations=1, warmup_rounds=1)
    assert sim.orth_error() < 1e-12
    record_per_step((d, n), "quadfast_block1", benchmark, steps)


def test_numpy_rank_one(benchmark, size, record_per_step):
    d, n = size
    teacher, W0 = _setup(d, n)
    W = W0.copy()
    rng = np.random.default_rng(1)
    steps = _steps(d, n, 1e8)
    benchmark.group = f"stiefel d={d} N={n}"
    benchmark.pedantic(ref.run_rank_one, args=(W, teacher, steps, LR_D / d, rng), rounds=3, iterations=1,
                       warmup_rounds=1)
    assert np.max(np.abs(W.T @ W - np.eye(n))) < 1e-9
    record_per_step((d, n), "numpy_rank_one", benchmark, steps)


def test_reference(benchmark, size, record_per_step):
    d, n = size
    teacher, W0 = _setup(d, n)
    rng = np.random.default_rng(1)
    steps = _steps(d, n, 2e7)
    holder = {}

    def run():
        holder["W"] = ref.run_reference(W0, teacher, steps, LR_D / d, rng)

    benchmark.group = f"stiefel d={d} N={n}"
    benchmark.pedantic(run, rounds=2 if d * n > 4e6 else 3, iterations=1)
    assert np.max(np.abs(holder["W"].T @ holder["W"] - np.eye(n))) < 1e-9
    record_per_step((d, n), "reference", benchmark, steps)


@pytest.mark.parametrize("rsize", [(4096, 64), (16384, 1024)], ids=["d4096-N64", "d16384-N1024"])
def test_quadfast_without_reortho(benchmark, rsize, record_per_step):
    """Same as test_quadfast with the drift control off: the difference is what the
    re-orthonormalisation policy (growth bound, probes, corrections) costs."""
    d, n = rsize
    teacher, W0 = _setup(d, n)
    sim = qf.StiefelSGD(teacher, n, lr=LR_D / d, W0=W0, seed=1, reortho=False)
    steps = max(8, -(-_steps(d, n, 4e8) // sim.block)) * sim.block  # >= 8 blocks per call
    sim.run(sim.block)
    benchmark.group = f"stiefel d={d} N={n}"
    benchmark.pedantic(sim.run, args=(steps, []), rounds=5, iterations=1, warmup_rounds=1)
    record_per_step((d, n), "quadfast_noreortho", benchmark, steps)
