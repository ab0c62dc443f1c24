"""The blocked engine (MODEL.md §3) at extensive width: threads, float32, the flop rate
as a fraction of the machine's dgemm rate, and the width-1 step against NumPy's sampler.

Every figure is seconds per SGD step with batch 1 and sampling included, timed with
``run(steps, record=[])``: the steps alone, as the NumPy baselines are.  A record point
(risk, alignment and the exact max|W^T W - I|, O(d N^2)) is timed on its own
(test_record_point).  The dgemm rate
is NumPy's (OpenBLAS) float64 matrix product measured in the same run; the flop count of
a step is 6 d N (MODEL.md §3).  Run together with bench_stiefel.py so that the table also
shows the ratios to the NumPy rank-one step and to the reference from the same run:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 pytest benchmarks/bench_stiefel.py benchmarks/bench_engine.py

(OPENBLAS_NUM_THREADS=1 makes the NumPy baselines and the dgemm rate single-threaded;
quadfast's threads are set per simulator with threads=.)
"""
import numpy as np
import pytest

import quadfast as qf

LR_D = 1e-3
CASES = [(16384, 1024, "float64", 1), (16384, 1024, "float64", 2), (16384, 1024, "float32", 1),
         (16384, 1024, "float32", 2), (4096, 64, "float64", 1), (4096, 64, "float64", 2),
         (4096, 64, "float32", 1), (16384, 1, "float64", 1), (16384, 1, "float64", 2)]
QUICK = [(1024, 32, "float64", 1), (1024, 32, "float64", 2), (1024, 32, "float32", 1)]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = QUICK if metafunc.config.getoption("--quick") else CASES
        metafunc.parametrize("case", cases, ids=[f"d{d}-N{n}-{t}-t{k}" for d, n, t, k in cases])


def _sim(d, n, dtype, threads):
    teacher = qf.Teacher(qf.power_law_coef(n, 1.0), d=d)
    return qf.StiefelSGD(teacher, n, lr=LR_D / d, W0=qf.haar_stiefel(d, n, seed=1), seed=1, dtype=dtype,
                         threads=threads)


def test_engine(benchmark, case, record_per_step):
    d, n, dtype, threads = case
    sim = _sim(d, n, dtype, threads)
    steps = max(8, -(-int(4e8 // (d * n)) // sim.block)) * sim.block  # >= 8 blocks per call
    steps = min(steps, 20000 // sim.block * sim.block)
    sim.run(sim.block)
    benchmark.group = f"engine d={d} N={n}"
    benchmark.pedantic(sim.run, args=(steps, []), rounds=5, iterations=1, warmup_rounds=1)
    assert sim.orth_error() < sim.reortho_tol
    record_per_step(("engine", d, n, dtype, threads), "quadfast", benchmark, steps)


@pytest.mark.parametrize("threads", [1, 2])
def test_record_point(benchmark, request, threads, record_per_step):
    """What one record point of run() costs (risk, alignment, exact max|W^T W - I|), in
    seconds: not included in the per-step figures."""
    d, n = (1024, 32) if request.config.getoption("--quick") else (16384, 1024)
    sim = _sim(d, n, "float64", threads)
    benchmark.group = "record point"
    traj = benchmark.pedantic(sim.run, args=(0,), rounds=3, iterations=1, warmup_rounds=1)
    assert traj.orth_error[0] == sim.orth_error() < 1e-12
    record_per_step(("engine", "record", d, n, threads), "quadfast", benchmark, 1)


def test_threads_bit_identical(case):
    """The timed configurations give the same bits with 1 and 2 threads (a few blocks)."""
    d, n, dtype, threads = case
    if threads != 2:
        pytest.skip("checked once per size, on the two-thread case")
    sims = [_sim(d, n, dtype, t) for t in (1, 2)]
    for s in sims:
        s.run(3 * s.block)
    assert np.array_equal(sims[0].W, sims[1].W)


def test_dgemm_rate(benchmark, request, record_per_step):
    """NumPy's float64 matrix product (OpenBLAS), the machine's reference flop rate."""
    m = 512 if request.config.getoption("--quick") else 2048
    a = np.random.default_rng(0).standard_normal((m, m))
    b = np.random.default_rng(1).standard_normal((m, m))
    benchmark.group = "dgemm"
    c = benchmark.pedantic(np.matmul, args=(a, b), rounds=5, iterations=1, warmup_rounds=1)
    np.testing.assert_allclose(c[:3, :3], a[:3] @ b[:, :3], rtol=1e-12)
    record_per_step(("engine", "dgemm"), "flops", benchmark, 2.0 * m**3)  # seconds per flop


def test_numpy_draws_d_normals(benchmark, request, record_per_step):
    """What NumPy needs just to draw the d normals of one sample (width-1 target)."""
    d = 1024 if request.config.getoption("--quick") else 16384
    g = np.random.default_rng(0)
    out = np.empty(d)
    benchmark.group = "width 1"
    benchmark.pedantic(lambda: g.standard_normal(out=out), rounds=200, iterations=10, warmup_rounds=10)
    assert abs(out.mean()) < 6 / np.sqrt(d)
    record_per_step(("engine", "normals", d), "numpy", benchmark, 1)
