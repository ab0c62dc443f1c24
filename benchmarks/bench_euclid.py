"""Seconds per Euclidean SGD step (the 2-homogeneous student of MODEL.md §1), sampling
included, against the Stiefel step at the same size, in the same run:
  * euclid: EuclideanSGD on one thread, its default engine (quadfast.euclid.default_block);
  * euclid_block1: EuclideanSGD(block=1), the sequential one-pass kernel;
  * euclid_t1, euclid_t2: the blocked engine (block = quadfast.euclid.default_block) on 1 and 2
    threads (bit-identical results; the speed-up is t1 / t2);
  * stiefel_t1, stiefel_t2: StiefelSGD, its default engine, on 1 and 2 threads;
  * numpy: the same Euclidean step in plain NumPy (reference.run_euclid_reference).
Batch 1, float64, width N = r, lr*d = 1e-3.  Run with OPENBLAS_NUM_THREADS=1 (the NumPy
reference single-threaded).  Targets: the Euclidean step within 1.3x of the Stiefel step
at equal threads.  On an oversubscribed machine OpenMP's spinning barriers make the
2-thread runs very slow; OMP_WAIT_POLICY=passive avoids that.

Run:  pytest benchmarks/bench_euclid.py            ((4096, 64) and (16384, 1024))
      pytest benchmarks/bench_euclid.py --quick    ((1024, 32))
"""
import os
from pathlib import Path

import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref

GRID = [(4096, 64), (16384, 1024)]
LR_D = 1e-3
TIMES = {}  # (d, N) -> {implementation: seconds per step}


def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        cases = [(1024, 32)] if metafunc.config.getoption("--quick") else GRID
        metafunc.parametrize("size", cases, ids=[f"d{d}-N{n}" for d, n in cases])


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not TIMES:
        return
    lines = ["| (d, N) | euclid default, 1 thread (s/step) | euclid block=1 | euclid blocked, 1 thread | "
             "euclid blocked, 2 threads | stiefel, 1 thread | stiefel, 2 threads | NumPy Euclidean | "
             "euclid / stiefel (1 thread) | euclid / stiefel (2 threads) | euclid speed-up 2 threads | NumPy / euclid |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    for key in sorted(TIMES):
        t = TIMES[key]
        e, n = t.get("euclid"), t.get("numpy")
        e1, e2, s1, s2 = (t.get(k) for k in ("euclid_t1", "euclid_t2", "stiefel_t1", "stiefel_t2"))
        ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}x"  # noqa: E731
        best1 = None if e is None or e1 is None else min(e, e1)
        lines.append(f"| {key} | {f(e)} | {f(t.get('euclid_block1'))} | {f(e1)} | {f(e2)} | {f(s1)} | {f(s2)} | {f(n)} "
                     f"| {ratio(best1, s1)} | {ratio(e2, s2)} | {ratio(e1, e2)} | {ratio(n, e)} |")
    text = "\n".join(lines)
    print("\n\nEuclidean step, seconds per step measured in this run\n" + text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{os.environ.get('QUADFAST_BENCH_NAME', 'euclid')}.md").write_text(text + "\n")


def _record(size, impl, benchmark, steps):
    st = benchmark.stats.stats if benchmark.stats is not None else None
    if st is not None:
        TIMES.setdefault(size, {})[impl] = st.min / steps


def _teacher(d, n):
    return qf.Teacher(qf.power_law_coef(n, 1.0), d=d)


def _steps(d, n, budget, block=1):
    s = int(max(1, min(20000, budget // (d * n))))
    return max(2, -(-s // block)) * block  # whole blocks


@pytest.mark.parametrize("impl", ["euclid", "euclid_block1", "euclid_t1", "euclid_t2", "stiefel_t1", "stiefel_t2"])
def test_kernel(benchmark, size, impl):
    d, n = size
    teacher = _teacher(d, n)
    threads = 2 if impl.endswith("_t2") else 1
    if impl.startswith("stiefel"):
        sim = qf.StiefelSGD(teacher, n, lr=LR_D / d, seed=1, threads=threads)
    else:
        block = {"euclid": None, "euclid_block1": 1}.get(impl, qf.euclid.default_block(d, n, 1))
        sim = qf.EuclideanSGD(teacher, n, lr=LR_D / d, seed=1, block=block, threads=threads)
    steps = _steps(d, n, 1.5e8, sim.block)
    sim.run(sim.block)
    benchmark.group = f"euclid d={d} N={n}"
    benchmark.pedantic(sim.run, args=(steps, []), rounds=3, iterations=1, warmup_rounds=1)  # steps alone
    assert np.isfinite(sim.W).all() and sim.steps_done >= sim.block + steps
    if impl.startswith("stiefel"):
        assert sim.orth_error() < 1e-12
    else:  # still on the plateau from the small start: the risk is ~1
        assert 0.9 < sim.risk() <= 1.0 + 1e-6
    _record(size, impl, benchmark, steps)


def test_numpy(benchmark, size):
    d, n = size
    teacher = _teacher(d, n)
    W = qf.euclid.small_init(d, n, seed=1)
    rng = np.random.default_rng(1)
    steps = _steps(d, n, 2e7)
    benchmark.group = f"euclid d={d} N={n}"
    benchmark.pedantic(ref.run_euclid_reference, args=(W, teacher, steps, LR_D / d, rng), rounds=3, iterations=1,
                       warmup_rounds=1)
    assert np.isfinite(W).all() and 0.0 < np.sum(W * W) < 1.0
    _record(size, "numpy", benchmark, steps)
