"""Teacher conventions (MODEL.md §1) and the statistics of the Gaussian sampler."""
import math

import numpy as np
import pytest
from scipy import stats

import quadfast as qf
from quadfast._ext import core as _core


@pytest.mark.parametrize("d,beta", [(4096, 0.5), (2048, 0.5), (1000, 0.3), (10, 0.0)])
def test_power_law_width_and_normalisation(d, beta):
    t = qf.Teacher.power_law(d, beta, 1.3)
    expect = 64 if (d, beta) == (4096, 0.5) else math.ceil(d**beta - 1e-9)
    assert t.r == expect
    assert np.linalg.norm(t.coef) == pytest.approx(1.0, abs=1e-14)
    ratios = t.coef[1:] / t.coef[:-1]
    np.testing.assert_allclose(ratios, (np.arange(2, t.r + 1) / np.arange(1, t.r)) ** -1.3, rtol=1e-12)


def test_label_moments_match_population_formulas():
    """E y = 0 and E y^2 = 2 ||lambda||^2 + sigma^2 (MODEL.md §1), within 5 standard errors."""
    t = qf.Teacher.power_law(50, 0.5, 1.0, noise=0.5)
    X, y = t.sample(40_000, seed=3)
    var_expect = 2 * np.sum(t.coef**2) + 0.25
    se_mean = math.sqrt(var_expect / y.size)
    assert abs(y.mean()) < 5 * se_mean
    # Var(y^2) is finite; use the sample estimate for the standard error of the second moment
    se_m2 = np.std(y**2) / math.sqrt(y.size)
    assert abs(np.mean(y**2) - var_expect) < 5 * se_m2


def test_explicit_frame_labels_equal_rotated_canonical_labels():
    base = qf.Teacher.power_law(30, 0.5, 1.0)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((30, 30)))
    rotated = qf.Teacher(base.coef, directions=q[:, : base.r])
    X = np.random.default_rng(1).standard_normal((100, 30))
    np.testing.assert_allclose(rotated.label(X), base.label(X @ q), atol=1e-12)


def test_samples_are_reproducible_and_indexed_by_stream():
    t = qf.Teacher.power_law(33, 0.5, 1.0, noise=0.1)
    X1, y1 = t.sample(10, seed=5)
    X2, y2 = t.sample(4, seed=5, start=6)
    assert np.array_equal(X1[6:], X2) and np.array_equal(y1[6:], y2)
    assert _core.normal_at(5, 7, 12) == X1[7, 12]
    Xf, _ = t.sample(10, seed=5, dtype=np.float32)
    assert np.array_equal(Xf, X1.astype(np.float32))


def test_normals_moments_and_ks():
    """Mean, variance, skewness, excess kurtosis within 5 standard errors; KS p > 1e-4."""
    out = np.empty((400, 2501))
    _core.fill_normals(out, 2024, 0)
    x = out.ravel()
    n = x.size
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(x)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(x)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(x[:200_000], "norm").pvalue > 1e-4


def test_normals_independent_across_streams_positions_and_seeds():
    """Correlations between neighbouring streams, positions (even vs odd, lag 1) and seeds
    are within 5/sqrt(n) of zero (tests/test_rng.py has the fuller set)."""
    a = np.empty((2000, 500))
    b = np.empty((2000, 500))
    _core.fill_normals(a, 1, 0)
    _core.fill_normals(b, 2, 0)
    n = a.size
    lim = 5 / math.sqrt(n)
    assert abs(np.mean(a[1:] * a[:-1])) < 5 / math.sqrt(a[1:].size)      # stream s vs s+1
    assert abs(np.mean(a[:, 0::2] * a[:, 1::2])) < 5 / math.sqrt(n / 2)  # even vs odd positions
    assert abs(np.mean(a[:, 1:] * a[:, :-1])) < 5 / math.sqrt(a[:, 1:].size)
    assert abs(np.mean(a * b)) < lim                                      # seed 1 vs seed 2
    # squares of even and odd positions are uncorrelated too
    assert abs(np.corrcoef(a[:, 0::2].ravel() ** 2, a[:, 1::2].ravel() ** 2)[0, 1]) < 5 / math.sqrt(n / 2)


def test_normal_tails():
    """P(|x| > 3) and P(|x| > 4) within 5 binomial standard errors of the Gaussian values."""
    out = np.empty((1000, 4000))
    _core.fill_normals(out, 77, 10**12)
    x = np.abs(out.ravel())
    for c in (3.0, 4.0):
        p = 2 * stats.norm.sf(c)
        assert abs(np.mean(x > c) - p) < 5 * math.sqrt(p * (1 - p) / x.size)


def test_every_built_variant_samples_the_same_bits():
    """The sampler is element-wise IEEE arithmetic: all instruction-set variants agree."""
    from quadfast import _ext

    outs = []
    for v in _ext.available():
        mod = _ext.load(v)
        out = np.empty((3, 1001))
        mod.fill_normals(out, 9, 123)
        outs.append(out)
    assert len(outs) >= 1
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])


def test_every_built_variant_runs_the_same_trajectory_to_rounding():
    from quadfast import _ext

    teacher = qf.Teacher.power_law(64, 0.5, 1.0, noise=0.1)
    results = []
    for v in _ext.available():
        mod = _ext.load(v)
        W = qf.haar_stiefel(64, 8, seed=2)
        k = mod.StiefelKernel64(64, 8, 1, 1e-3 / 64, teacher.coef, None, 0.1, 5, 1e-12, 1 << 22, True)
        k.advance(W, 300, None, None)
        results.append(W)
    for W in results[1:]:
        np.testing.assert_allclose(W, results[0], rtol=0, atol=1e-12)


def test_isa_override_is_validated(monkeypatch):
    from quadfast import _ext

    with pytest.raises(ValueError, match="QUADFAST_ISA"):
        _ext.load("sse9")
