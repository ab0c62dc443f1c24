"""Tests of quadfast.theory: §5 statements, derivations and the slope fit."""
import math

import numpy as np
import pytest
import scipy.stats
from numpy.testing import assert_allclose

from quadfast import riccati as rc
from quadfast import theory as th


def test_risk_exponent():
    assert th.risk_exponent(1.0) == -1.0
    assert_allclose(th.risk_exponent(1.5), -4.0 / 3.0, rtol=1e-15)
    for bad in (0.5, 0.3, float("nan"), -1.0):
        with pytest.raises(ValueError, match="alpha"):
            th.risk_exponent(bad)


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_emergence_time_is_the_logistic_crossing(level):
    # logistic with g(0) = N/d evaluated at the emergence time equals the level (1e-12)
    d, N = 10**6, 100
    lam = np.array([1.0, 0.3, 1e-3])
    tj = th.emergence_time(lam, d, N, level=level)
    for l, t in zip(lam, tj):
        assert_allclose(rc.logistic(l, [t], N / d)[0], level, atol=1e-12)
    assert_allclose(tj[1] * 0.3, tj[0] * 1.0, rtol=1e-14)  # t_j ~ 1 / lambda_j
    with pytest.raises(ValueError, match="width"):
        th.emergence_time(lam, 100, 60)
    with pytest.raises(ValueError, match="level"):
        th.emergence_time(lam, d, N, level=1.0)
    with pytest.raises(ValueError, match="coef"):
        th.emergence_time([0.0], d, N)


def test_learned_count_inverts_emergence_time():
    d, N, r, alpha = 10**6, 50, 400, 1.3
    lam = rc.teacher_coef(r, alpha)
    for j in (1, 7, 123):
        t = th.emergence_time(lam[j - 1], d, N)
        assert_allclose(th.learned_count(t, alpha, d, N, r=r), j, rtol=1e-10)


def test_power_law_matches_additive_model_tail():
    # J^{1-2a}/((2a-1) Z^2) approximates sum_{j>J} lambda_j^2 with relative error O(1/J):
    # within 3% at J ~ 100..300 (r = 1e5 so the finite-r term is negligible).
    d, N, r, alpha = 10**8, 10**5, 10**5, 1.5
    lam = rc.teacher_coef(r, alpha)
    t = th.emergence_time(lam[[99, 299]], d, N) * 1.0001
    add = th.additive_risk(t, lam, d, N)
    pl = th.risk_power_law(t, alpha, d, N, r=None)
    assert_allclose(pl, add, rtol=0.03)


def test_powerlaw_window_edge_has_the_stated_bend():
    # at t_hi the local slope of the finite-r law is (1 + eps) times the exponent (1e-5)
    d, N, r, alpha, eps = 10**6, 1000, 1000, 1.2, 0.05
    t_lo, t_hi = th.powerlaw_window(alpha, d, N, r, eps=eps)
    h = 1e-5
    f = lambda t: np.log(th.risk_power_law(t, alpha, d, N, r=r))  # noqa: E731
    slope = (f(t_hi * math.exp(h)) - f(t_hi * math.exp(-h))) / (2 * h)
    assert_allclose(slope, (1 + eps) * th.risk_exponent(alpha), rtol=1e-5)
    assert t_lo < t_hi
    with pytest.raises(ValueError, match="no power-law window"):
        th.powerlaw_window(0.75, d, N, r)


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_riccati_slope_small_scale(alpha):
    # Reduced-scale version of the README evidence (d = 1e5, r = N = 300): the fitted
    # slope over the theory window is within 0.05 of (1 - 2 alpha) / alpha.
    d, r = 10**5, 300
    st = rc.typical_start(d, r, r, np.random.default_rng(0))
    coef = rc.teacher_coef(r, alpha)
    w = th.powerlaw_window(alpha, d, r, r, j_lo=4)
    times = np.geomspace(w[0], w[1], 30)
    fit = th.fit_loglog_slope(times, rc.risk_curve(coef, times, factor=st))
    assert abs(fit.slope - th.risk_exponent(alpha)) < 0.05


def test_fit_exact_power_law_and_linregress():
    t = np.geomspace(1, 1e4, 50)
    fit = th.fit_loglog_slope(t, 3.0 * t**-0.7)
    assert_allclose(fit.slope, -0.7, rtol=1e-12)
    assert_allclose(fit.intercept, math.log(3.0), rtol=1e-12)
    assert fit.ci_high - fit.ci_low < 1e-10
    rng = np.random.default_rng(0)
    y = t**-0.7 * np.exp(0.1 * rng.standard_normal(t.size))
    fit = th.fit_loglog_slope(t, y, window=(10, 1e3), level=0.9)
    sel = (t >= 10) & (t <= 1e3)
    ref = scipy.stats.linregress(np.log(t[sel]), np.log(y[sel]))
    assert_allclose([fit.slope, fit.intercept, fit.stderr], [ref.slope, ref.intercept, ref.stderr], rtol=1e-10)
    q = scipy.stats.t.ppf(0.95, sel.sum() - 2)
    assert_allclose([fit.ci_low, fit.ci_high], [ref.slope - q * ref.stderr, ref.slope + q * ref.stderr], rtol=1e-10)
    assert fit.n == sel.sum()


def test_fit_ci_coverage_with_iid_noise():
    # With independent Gaussian residuals the 95% interval covers the true slope in
    # 95% of 1000 replicates: binomial 99.9% band [0.927, 0.971].
    rng = np.random.default_rng(42)
    t = np.geomspace(1, 100, 12)
    hits = 0
    for _ in range(1000):
        y = 2.0 * t**-1.3 * np.exp(0.2 * rng.standard_normal(t.size))
        f = th.fit_loglog_slope(t, y)
        hits += f.ci_low <= -1.3 <= f.ci_high
    assert 927 <= hits <= 971


def test_fit_bad_input():
    t = np.geomspace(1, 10, 10)
    with pytest.raises(ValueError, match="window"):
        th.fit_loglog_slope(t, t, window=(2.0, 2.5))
    with pytest.raises(ValueError, match="window"):
        th.fit_loglog_slope(t, t, window=(0.0, 5.0))
    with pytest.raises(ValueError, match="y must be finite and > 0"):
        th.fit_loglog_slope(t, -t)
    with pytest.raises(ValueError, match="level"):
        th.fit_loglog_slope(t, t, level=1.5)
    with pytest.raises(ValueError, match="same length"):
        th.fit_loglog_slope(t, t[:-1])


def test_prescriptions():
    d, r = 10**6, 1000
    assert_allclose(th.learning_rate(d, 1.0), 1 / (d * math.log(d)))
    assert_allclose(th.learning_rate(d, 0.25, r=r, log_power=2), 1 / (d * r**0.25 * math.log1p(d / r) ** 2))
    assert_allclose(th.sample_size(d, 1.5, log_power=0), d)
    assert_allclose(th.sample_size(d, 0.25, r=r), d * r**1.25 * math.log1p(d / r))
    with pytest.raises(ValueError, match="alpha = 1/2"):
        th.learning_rate(d, 0.5)
    with pytest.raises(ValueError, match="r is required"):
        th.sample_size(d, 0.2)
    # the alpha < 1/2 statement: floor from the width, 1 at t -> 0
    assert_allclose(th.risk_alpha_below_half([1e-9, 1e9], 0.25, 0.5), [1.0, 1 - 0.5**0.5], atol=1e-4)


def test_qplr_statements():
    assert_allclose(th.qplr_effective_dimension(1e6, 1e9, 2.0, 1.5), 1e6 ** (1 / 1.75))
    assert th.qplr_effective_dimension(1e6, 10, 2.0, 1.5) == 10
    assert_allclose(th.qplr_rate_exponent(2.0, 1.5), -1.0 / 3.5)
    with pytest.raises(ValueError, match="a_data > b_target"):
        th.qplr_rate_exponent(1.0, 1.5)
