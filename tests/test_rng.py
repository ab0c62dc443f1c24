"""The counter-based ziggurat Gaussian sampler (csrc/include/quadfast/rng.hpp).

Statistical tests run on fixed seeds, each at a stated level: a statistic within 5
standard errors of its exact value (two-sided level 6e-7 for a Gaussian statistic), or a
p-value above 1e-4.  With fixed seeds the outcome is deterministic; a wrong sampler moves
these statistics by many standard errors at the sample sizes used.
"""
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

from quadfast._ext import core as _core

P_MIN = 1e-4  # level of the p-value tests
Z = 5.0  # standard errors allowed for statistics with a known standard error
ROOT = Path(__file__).resolve().parents[1]


def draw(n, seed, stream0=0, length=1 << 16, dtype=np.float64):
    """n normals as rows of `length` from consecutive streams (the table path)."""
    rows = -(-n // length)
    out = np.empty((rows, length), dtype=dtype)
    _core.fill_normals(out, seed, stream0)
    return out.ravel()[:n]


def f(x):
    return np.exp(-0.5 * x * x)


# ---------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------

def test_ziggurat_tables_tile_the_density():
    """Every layer has area v (rel. 1e-13), the top layer ends at the peak, the base layer
    is the rectangle [0, r] x [0, f(r)] plus the tail, and K, F are consistent with W."""
    t = _core.ziggurat_tables()
    r, v, W, K, F = t["r"], t["v"], t["W"], t["K"], t["F"]
    x = W.copy()
    x[0] = 0.0  # x_0 = 0: the top layer's left edge
    assert W[255] == r and F[0] == 1.0
    np.testing.assert_allclose(W[1:] * (F[:-1] - F[1:]), v, rtol=1e-13)
    np.testing.assert_allclose(F[1] + v / W[1], 1.0, rtol=1e-14)
    tail = math.sqrt(math.pi / 2) * special.erfc(r / math.sqrt(2))
    assert r * f(r) + tail == pytest.approx(v, rel=1e-13)
    assert W[0] == pytest.approx(v / f(r), rel=1e-14)
    assert K[0] == pytest.approx(r * f(r) / v, rel=1e-14)
    np.testing.assert_allclose(K[1:], x[:-1] / W[1:], rtol=1e-15, atol=0)
    np.testing.assert_allclose(F[1:], f(W[1:]), rtol=1e-14)
    assert np.all(np.diff(W[1:]) > 0)
    k = t["inflection_layer"]
    assert W[k - 1] <= 1.0 < W[k]
    # the 256 layers (area v each) hold the mass sqrt(pi / 2) of f on [0, inf) plus the
    # wedges' overhang: about 0.7% of draws end in a wedge reject (Marsaglia & Tsang 2000)
    assert 0.99 < math.sqrt(math.pi / 2) / (256 * v) < 1


def test_ziggurat_header_is_the_generator_output():
    """rng_tables.hpp is exactly what tools/gen_ziggurat_tables.py prints (mpmath, 60 digits)."""
    pytest.importorskip("mpmath")
    import importlib.util
    import contextlib
    import io

    spec = importlib.util.spec_from_file_location("gen_zig", ROOT / "tools" / "gen_ziggurat_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mod.main()
    header = (ROOT / "csrc" / "include" / "quadfast" / "rng_tables.hpp").read_text()
    assert buf.getvalue() == header
    t = _core.ziggurat_tables()
    assert float.hex(t["r"]) in header and float.hex(t["W"][17]) in header


# ---------------------------------------------------------------------------------------
# Determinism and API
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 511, 512, 513, 1000, 1001, 4099])
def test_fill_equals_normal_at_at_every_index(n):
    """Both fill paths (per-row hashing for < 4 streams, a shared table for >= 4) and
    normal_at agree bit for bit, for odd and even n and across chunk boundaries."""
    seed, s0 = 31337, 2**40 + 5
    many = np.empty((5, n))
    _core.fill_normals(many, seed, s0)
    for s in range(5):
        one = np.empty((1, n))
        _core.fill_normals(one, seed, s0 + s)
        assert np.array_equal(one[0], many[s])
    ref = np.array([_core.normal_at(seed, s0 + 3, i) for i in range(n)])
    assert np.array_equal(ref, many[3])


def test_range_fill_matches_the_stream():
    """fill_normals_range(out, seed, stream, start) is elements start .. start+len of the
    stream, for any start (also far out, near 2**64), and in float32 too."""
    seed, stream = 5, 77
    full = np.empty((1, 5000))
    _core.fill_normals(full, seed, stream)
    for start, length in [(0, 5000), (1, 3), (511, 2), (13, 1200), (4096, 904), (4999, 1), (100, 0)]:
        part = np.empty(length)
        _core.fill_normals_range(part, seed, stream, start)
        assert np.array_equal(part, full[0, start:start + length])
    for start in (2**40 + 3, 2**63 - 5, 2**64 - 701):  # the last one ends at index 2**64 - 2
        part = np.empty(700)
        _core.fill_normals_range(part, seed, stream, start)
        ref = [_core.normal_at(seed, stream, start + i) for i in range(0, part.size, 37)]
        assert np.array_equal(part[::37], ref)
    part32 = np.empty(1200, dtype=np.float32)
    _core.fill_normals_range(part32, seed, stream, 13)
    assert np.array_equal(part32, full[0, 13:1213].astype(np.float32))


def test_range_fill_validates_its_input():
    with pytest.raises(ValueError, match="out"):
        _core.fill_normals_range(np.empty((2, 3)), 1, 2, 0)
    with pytest.raises(ValueError, match="overflows"):
        _core.fill_normals_range(np.empty(10), 1, 2, 2**64 - 5)
    with pytest.raises(TypeError):
        _core.fill_normals_range(np.empty(10, dtype=np.int64), 1, 2, 0)


def test_float32_output_is_the_float64_output_rounded():
    a = np.empty((6, 3001))
    b = np.empty((6, 3001), dtype=np.float32)
    _core.fill_normals(a, 8, 1000)
    _core.fill_normals(b, 8, 1000)
    assert np.array_equal(b, a.astype(np.float32))
    a1 = np.empty((1, 3001))
    b1 = np.empty((1, 3001), dtype=np.float32)
    _core.fill_normals(a1, 8, 1003)
    _core.fill_normals(b1, 8, 1003)
    assert np.array_equal(b1, a1.astype(np.float32)) and np.array_equal(a1[0], a[3])


def test_every_runtime_loop_gives_the_same_bits():
    """The baseline, AVX2 and AVX-512 loops of the runtime dispatch (those this CPU has)
    agree bit for bit, in float64 and float32, over 2**18 deviates.  Counted with an
    instrumented copy of rng.hpp: 3954 fast-path rejects, of which the AVX-512 slow path
    evaluates the wedge's exp for 1993 and takes a fresh draw for 1777, and hands 84 (the
    tail beyond r, and fresh draws rejected again) to the scalar ziggurat."""
    isas = ["baseline"] + [i for i in ("avx2", "avx512") if i in _available_isas()]
    for dtype in (np.float64, np.float32):
        outs = []
        for isa in isas:
            o = np.empty((1 << 18) + 3, dtype=dtype)
            _core._fill_normals_range_isa(o, 99, 12, 2**33 + 1, isa)
            outs.append(o)
        ref = np.empty_like(outs[0])
        _core.fill_normals_range(ref, 99, 12, 2**33 + 1)
        for o in outs:
            assert np.array_equal(o, ref)
    # short and ragged last chunks (m < 4, 4 <= m < 32, m % 4 != 0) at two starts: the
    # AVX2 loop hashes positions ahead of use on the fly, and hands the tail to scalar code
    for n in (1, 3, 4, 5, 7, 31, 33, 37, 511, 513, 515, 1029):
        for start in (0, 2**64 - 2000):
            ref = np.empty(n)
            _core._fill_normals_range_isa(ref, 7, 3, start, "baseline")
            for isa in isas[1:]:
                o = np.empty(n)
                _core._fill_normals_range_isa(o, 7, 3, start, isa)
                assert np.array_equal(o, ref), (isa, n, start)
    with pytest.raises(ValueError, match="isa"):
        _core._fill_normals_range_isa(np.empty(4), 1, 1, 0, "sse9")


def test_every_built_extension_variant_gives_the_same_bits():
    """quadfast._core, _core_avx2 and _core_avx512 (those built and supported here) agree
    bit for bit on every fill path: the cached table (1 x 2**18), a per-call table
    (4 x 2**17 + 1 rows), per-row hashing (2 rows), ranges, float32, and normal_at."""
    from quadfast import _ext

    results = []
    for v in _ext.available():
        mod = _ext.load(v)
        a = np.empty((1, 1 << 18))
        mod.fill_normals(a, 3, 9)
        b = np.empty((4, (1 << 17) + 1), dtype=np.float32)
        mod.fill_normals(b, 3, 9)
        c = np.empty((2, (1 << 17) + 1))
        mod.fill_normals(c, 3, 9)
        d = np.empty(100_003)
        mod.fill_normals_range(d, 3, 10, 2**50)
        e = [mod.normal_at(3, 9, i) for i in (0, 1, 12345, 2**62)]
        results.append((v, a, b, c, d, e))
    assert results
    _, a0, b0, c0, d0, e0 = results[0]
    assert np.array_equal(b0[0], a0[0, : b0.shape[1]].astype(np.float32))
    assert np.array_equal(c0[0], a0[0, : c0.shape[1]])
    for v, a, b, c, d, e in results[1:]:
        assert np.array_equal(a, a0) and np.array_equal(b, b0) and np.array_equal(c, c0), v
        assert np.array_equal(d, d0) and e == e0, v


def _available_isas():
    out = []
    for isa in ("avx2", "avx512"):
        try:
            _core._fill_normals_range_isa(np.empty(1), 0, 0, 0, isa)
            out.append(isa)
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------------------------------
# Distribution
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2**63 + 12345, 987654321])
def test_moments_and_ks(seed):
    """Mean, variance, skewness, excess kurtosis within 5 standard errors of 0, 1, 0, 0
    (SE sqrt(1/n), sqrt(2/n), sqrt(6/n), sqrt(24/n)); KS against N(0, 1) with p > 1e-4."""
    n = 2_000_000
    x = draw(n, seed, stream0=seed % 1000)
    assert abs(x.mean()) < Z / math.sqrt(n)
    assert abs(x.var() - 1) < Z * math.sqrt(2 / n)
    assert abs(stats.skew(x)) < Z * math.sqrt(6 / n)
    assert abs(stats.kurtosis(x)) < Z * math.sqrt(24 / n)
    assert stats.kstest(x, "norm").pvalue > P_MIN


@pytest.fixture(scope="module")
def big_sample_abs():
    """|x| for 3 * 10**7 deviates (seed 2718), float64."""
    return np.abs(draw(30_000_000, 2718, length=1 << 20))


def test_tail_frequencies(big_sample_abs):
    """P(|x| > c) for c = 3, 4, 5 within 5 binomial standard errors of 2 Q(c)."""
    x = big_sample_abs
    for c in (3.0, 4.0, 5.0):
        p = 2 * stats.norm.sf(c)
        k = np.count_nonzero(x > c)
        assert abs(k - x.size * p) < Z * math.sqrt(x.size * p * (1 - p)), (c, k, x.size * p)


def test_tail_beyond_the_base_layer(big_sample_abs):
    """Deviates beyond r (Marsaglia's tail method): their count is binomial (5 SE), their
    law is the normal conditioned on |x| > r (KS p > 1e-4) with mean phi(r)/Q(r) (5 SE)."""
    r = _core.ziggurat_tables()["r"]
    x = big_sample_abs
    t = x[x > r]
    p = 2 * stats.norm.sf(r)
    assert abs(t.size - x.size * p) < Z * math.sqrt(x.size * p * (1 - p))
    q = stats.norm.sf(r)
    assert stats.kstest(t, lambda z: 1 - stats.norm.sf(z) / q).pvalue > P_MIN
    mean = stats.norm.pdf(r) / q
    var = 1 + r * mean - mean**2
    assert abs(t.mean() - mean) < Z * math.sqrt(var / t.size)


def test_layer_histogram_chi_square(big_sample_abs):
    """|x| in bins that split every ziggurat layer [x_{k-1}, x_k) in 4 (fast path and wedge
    alike) and the tail: Pearson chi-square against the exact half-normal masses, p > 1e-4."""
    t = _core.ziggurat_tables()
    W = t["W"]
    edges = np.r_[0.0, W[1:]]
    fine = np.unique(np.concatenate([edges[:-1] + (edges[1:] - edges[:-1]) * j / 4 for j in range(4)] + [edges]))
    x = big_sample_abs
    counts = np.bincount(np.searchsorted(fine, x, side="right") - 1, minlength=fine.size)
    probs = np.diff(np.r_[2 * stats.norm.cdf(fine) - 1, 1.0])
    expect = x.size * probs
    chi2 = np.sum((counts - expect) ** 2 / expect)
    assert stats.chi2.sf(chi2, fine.size - 1) > P_MIN


# ---------------------------------------------------------------------------------------
# Independence
# ---------------------------------------------------------------------------------------

def _pair_chi2_pvalue(a, b, bins=12):
    """Pearson chi-square of (a, b) on a bins x bins grid of N(0, 1) quantiles against the
    product of the exact marginals (bins^2 - 1 degrees of freedom)."""
    q = stats.norm.ppf(np.linspace(0, 1, bins + 1)[1:-1])
    ia = np.searchsorted(q, a)
    ib = np.searchsorted(q, b)
    counts = np.bincount(ia * bins + ib, minlength=bins * bins)
    expect = a.size / bins**2
    chi2 = np.sum((counts - expect) ** 2 / expect)
    return stats.chi2.sf(chi2, bins * bins - 1)


def test_independence_across_streams_seeds_and_positions():
    """Correlations between equal indices of adjacent streams, of adjacent seeds, and of
    lags 1, 2 and 8 within a stream are within 5/sqrt(n) of 0; the 2-D chi-square of the
    same pairs (and of their squares' correlation) shows no dependence (p > 1e-4)."""
    rows, length = 2000, 1000
    a = np.empty((rows, length))
    b = np.empty((rows, length))
    _core.fill_normals(a, 11, 0)
    _core.fill_normals(b, 12, 0)
    pairs = {
        "stream s, s+1": (a[1:], a[:-1]),
        "seed 11, 12": (a, b),
        "lag 1": (a[:, 1:], a[:, :-1]),
        "lag 2": (a[:, 2:], a[:, :-2]),
        "lag 8": (a[:, 8:], a[:, :-8]),
    }
    for name, (u, v) in pairs.items():
        u, v = u.ravel(), v.ravel()
        n = u.size
        assert abs(np.mean(u * v)) < Z / math.sqrt(n), name
        # the squares are independent too: E[(u^2 - 1)(v^2 - 1)] = 0 with SE sqrt(4/n)
        assert abs(np.mean((u * u - 1) * (v * v - 1))) < Z * 2 / math.sqrt(n), name
        assert _pair_chi2_pvalue(u, v) > P_MIN, name


def test_independence_of_nearby_keys():
    """Streams 2**k apart and seeds differing in one bit give independent values
    (correlation within 5/sqrt(n)); the keys are hashed, so no structure survives."""
    length = 200_000
    base = np.empty((1, length))
    _core.fill_normals(base, 0, 0)
    n = length
    for seed, stream in [(0, 1), (0, 2**32), (0, 2**63), (1, 0), (2**63, 0)]:
        other = np.empty((1, length))
        _core.fill_normals(other, seed, stream)
        assert abs(np.mean(base * other)) < Z / math.sqrt(n), (seed, stream)
        assert _pair_chi2_pvalue(base[0], other[0], bins=8) > P_MIN, (seed, stream)
