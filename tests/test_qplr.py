"""Quadratically parameterised linear regression (quadfast.QPLR): kernel against the NumPy
reference on the same samples, thread- and replica-count invariance, the risk formula
against Monte Carlo, the schedule, divergence reporting and bad input."""
import numpy as np
import pytest
from scipy.special import zeta

import quadfast as qf
from quadfast import reference as ref
from quadfast._ext import core as _core


def _reference_run(p, out, T, R, seed, init, record):
    G = p.normals(T, R, seed=seed)
    lr = qf.qplr.schedule(T, out.lr, out.phase1, out.stages)
    lrl = qf.qplr.schedule(T, out.lr_linear, out.phase1, out.stages)
    return ref.qplr_sgd(G, p.lam, p.theta, p.tail, p.noise, lr, lrl, np.full(p.M, init), np.zeros(p.M), record=record)


@pytest.mark.parametrize("alpha,beta", [(2.0, 1.5), (1.5, 2.5)])
def test_kernel_matches_reference(alpha, beta):
    p = qf.QPLR(M=40, alpha=alpha, beta=beta, noise=0.2)
    rec = np.array([0, 1, 17, 150, 151, 400])
    out = p.run(400, replicas=3, record=rec, seed=4, init=0.2, lr=2 * p.default_lr(), phase1=120, stages=5)
    v, w, rq, rl = _reference_run(p, out, 400, 3, 4, 0.2, rec)
    np.testing.assert_allclose(out.v, v, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out.w, w, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out.risk, rq, rtol=1e-12)
    np.testing.assert_allclose(out.risk_linear, rl, rtol=1e-12)
    assert out.risk[-1].mean() < out.risk[0].mean()  # it learns


def test_bit_identical_across_threads_and_replica_counts():
    p = qf.QPLR(M=30, alpha=3.0, beta=2.0, noise=0.1)
    rec = np.array([0, 50, 500])
    runs = [p.run(500, replicas=5, record=rec, seed=9, threads=t) for t in (1, 2, 3)]
    for o in runs[1:]:
        for a, b in ((o.v, runs[0].v), (o.w, runs[0].w), (o.risk, runs[0].risk), (o.risk_linear, runs[0].risk_linear)):
            np.testing.assert_array_equal(a, b)
    two = p.run(500, replicas=2, record=rec, seed=9, threads=2)
    np.testing.assert_array_equal(two.v, runs[0].v[:2])
    np.testing.assert_array_equal(two.risk, runs[0].risk[:, :2])
    no_lin = p.run(500, replicas=5, record=rec, seed=9, linear=False)
    assert no_lin.w is None and no_lin.risk_linear is None
    np.testing.assert_array_equal(no_lin.risk, runs[0].risk)


def test_risk_formula_against_monte_carlo():
    """E[(<x_{1:M}, v^2> - <x_{1:K}, theta>)^2] by Monte Carlo over K = 400 explicit
    coordinates equals sum_{i<=M} lambda_i (v_i^2 - theta_i)^2 + sum_{M<i<=K} i^-beta, within
    4 standard errors; and that finite tail equals zeta(beta, M+1) - zeta(beta, K+1)."""
    alpha, beta, M, K = 2.0, 1.5, 6, 400
    p = qf.QPLR(M=M, alpha=alpha, beta=beta)
    rng = np.random.default_rng(0)
    v = rng.uniform(0.0, 1.5, M)
    i = np.arange(1, K + 1)
    lam, theta = i ** -alpha, i ** ((alpha - beta) / 2)
    w_model = np.concatenate([v * v, np.zeros(K - M)])
    sq = []
    for _ in range(4):
        X = rng.standard_normal((50_000, K)) * np.sqrt(lam)
        sq.append((X @ (w_model - theta)) ** 2)
    sq = np.concatenate(sq)
    finite_tail = np.sum(i[M:] ** -beta)
    assert finite_tail == pytest.approx(zeta(beta, M + 1) - zeta(beta, K + 1), rel=1e-12)
    want = p.risk(v) - p.tail + finite_tail
    assert abs(sq.mean() - want) < 4 * sq.std() / np.sqrt(sq.size)
    assert p.tail == pytest.approx(np.sum(np.arange(M + 1, 2_000_001) ** -beta) + zeta(beta, 2_000_001), rel=1e-12)


def test_kernel_records_the_exact_risk():
    p = qf.QPLR(M=12, alpha=2.0, beta=1.5)
    out = p.run(200, replicas=2, seed=1)
    np.testing.assert_allclose(out.risk[-1], p.risk(out.v), rtol=1e-13)
    np.testing.assert_allclose(out.risk_linear[-1], p.risk_linear(out.w), rtol=1e-13)


def test_schedule():
    T, phase1, stages = 1000, 300, 7
    s = qf.qplr.schedule(T, 0.5, phase1, stages)
    assert np.all(s[:phase1] == 0.5)
    l = -np.log2(s[phase1:] / 0.5)
    assert l[0] == 1 and l[-1] == stages and np.all(np.diff(l) >= 0) and np.all(np.isin(np.diff(l), [0, 1]))
    kern = np.array([_core.qplr_decay_factor(t, T, phase1, stages) for t in range(T)])
    np.testing.assert_array_equal(kern * 0.5, s)
    out = qf.QPLR(M=4, alpha=2, beta=2).run(4096, record=np.array([4096]))
    assert (out.phase1, out.stages) == (2048, 11)


def test_divergence_is_reported():
    p = qf.QPLR(M=10, alpha=2.0, beta=1.5, noise=0.1)
    out = p.run(2000, replicas=2, lr=50.0, record=np.array([0, 1000, 2000]), seed=0)
    assert np.all(out.diverged > 0) and np.all(out.diverged <= 1000)
    assert np.all(np.isnan(out.risk[1:])) and np.all(np.isfinite(out.risk[0]))
    assert np.all(out.diverged_linear == 0) and np.all(np.isfinite(out.risk_linear))


def test_predicted_exponents():
    e = qf.qplr.predicted_exponents(3.0, 2.0)
    assert e["T_quadratic"] == pytest.approx(-0.4) and e["T_linear"] == pytest.approx(-1 / 3)
    assert e["M"] == pytest.approx(-1.0) and e["D"] == pytest.approx(0.4)
    assert qf.qplr.predicted_exponents(1.5, 2.0)["T_quadratic"] == pytest.approx(-0.5)
    assert qf.qplr.effective_dimension(10**5, 3.0, 2.0, M=50) == 50


def test_bad_input():
    with pytest.raises(ValueError, match="M"):
        qf.QPLR(M=0, alpha=2, beta=2)
    with pytest.raises(ValueError, match="beta"):
        qf.QPLR(M=5, alpha=2, beta=1.0)
    with pytest.raises(ValueError, match="alpha"):
        qf.QPLR(M=5, alpha=0.0, beta=2)
    with pytest.raises(ValueError, match="noise"):
        qf.QPLR(M=5, alpha=2, beta=2, noise=-1)
    with pytest.raises(TypeError, match="M"):
        qf.QPLR(M=5.0, alpha=2, beta=2)
    p = qf.QPLR(M=5, alpha=2, beta=2)
    for kwargs, name in [(dict(steps=0), "steps"), (dict(steps=10, replicas=0), "replicas"),
                         (dict(steps=10, phase1=11), "phase1"), (dict(steps=10, phase1=5, stages=6), "stages"),
                         (dict(steps=10, lr=-1.0), "lr"), (dict(steps=10, lr_linear=0.0), "lr_linear"),
                         (dict(steps=10, record=[5, 3]), "record"), (dict(steps=10, record=[11]), "record"),
                         (dict(steps=10, v0=np.ones(4)), "v0"), (dict(steps=10, threads=0), "threads"),
                         (dict(steps=10, init=np.nan), "init"), (dict(steps=10, seed=-2), "seed")]:
        with pytest.raises(ValueError, match=name):
            p.run(**kwargs)
    with pytest.raises(ValueError, match="v"):
        p.risk(np.ones(4))
