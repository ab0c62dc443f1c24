"""QPLR kernel (quadfast.QPLR.run: R replicas x T steps, quadratic and linear models on the
same samples) against the NumPy loop over steps vectorised over replicas
(quadfast.reference.qplr_sgd drawing its normals with NumPy's Generator per step), same
problem, schedule and number of replicas and steps, in the same process.  Sampling is
included in both (each step draws R (M + 2) normals).

Target: at M = 10^4 with 64 replicas, at least 20x the NumPy loop.
Run:  pytest benchmarks/bench_qplr.py            (M = 10^4, R = 64; threads 1 and 2)
      pytest benchmarks/bench_qplr.py --quick --benchmark-disable   (smoke run)
"""
import os

import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref

TIMES = {}


def _size(config):
    return (200, 8, 20) if config.getoption("--quick") else (10_000, 64, 200)  # (M, R, T)


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    if not TIMES:
        return
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    M, R, T = _size(request.config)
    npy = TIMES.get("numpy")
    tr.write_line(f"\nQPLR, M = {M}, R = {R}, T = {T} (seconds per step of all replicas; load {os.getloadavg()[0]:.2f})")
    for k, v in sorted(TIMES.items()):
        ratio = f"  ({npy / v:.1f}x the NumPy loop)" if npy and k != "numpy" else ""
        tr.write_line(f"  {k:12s} {v:.4g} s/step{ratio}")


def _problem(config):
    M, R, T = _size(config)
    return qf.QPLR(M=M, alpha=2.0, beta=1.5, noise=0.1), M, R, T


@pytest.mark.parametrize("threads", [1, 2])
def test_quadfast(benchmark, threads, request):
    p, M, R, T = _problem(request.config)
    benchmark.group = f"qplr M={M} R={R}"
    out = benchmark.pedantic(p.run, args=(T,), kwargs=dict(replicas=R, seed=1, threads=threads), rounds=3,
                             iterations=1, warmup_rounds=1)
    assert not out.diverged.any() and not out.diverged_linear.any()
    np.testing.assert_allclose(out.risk[-1], p.risk(out.v), rtol=1e-12)
    if benchmark.stats is not None:
        TIMES[f"quadfast t={threads}"] = benchmark.stats.stats.min / T


def test_numpy_loop(benchmark, request):
    p, M, R, T = _problem(request.config)
    lr = qf.qplr.schedule(T, p.default_lr())
    lrl = qf.qplr.schedule(T, p.default_lr_linear())

    class Draw:
        def __init__(self):
            self.rng = np.random.default_rng(1)

        def __getitem__(self, t):
            return self.rng.standard_normal((R, M + 2))

    def go():
        return ref.qplr_sgd(Draw(), p.lam, p.theta, p.tail, p.noise, lr, lrl, np.full((R, M), 0.1), np.zeros(M))

    benchmark.group = f"qplr M={M} R={R}"
    v, w, rq, rl = benchmark.pedantic(go, rounds=1, iterations=1)
    assert np.all(np.isfinite(rq)) and np.all(np.isfinite(rl))
    # same law as the kernel (other samples): the replica means of the two runs agree
    out = p.run(T, replicas=R, seed=2)
    se = np.hypot(rq.std(), out.risk.std()) / np.sqrt(R)
    assert abs(rq.mean() - out.risk.mean()) < 5 * se + 1e-12
    if benchmark.stats is not None:
        TIMES["numpy"] = benchmark.stats.stats.min / T
