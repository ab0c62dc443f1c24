"""Tests of quadfast.riccati: closed form, integrators, starts, comparison systems.

Tolerances are stated at each assertion. References: scipy.integrate.solve_ivp with tight
tolerances, an mpmath evaluation of the closed form with 60 digits, the NumPy twins of
the Numba kernels, and exact identities (semigroup, Loewner monotonicity).
"""
from types import SimpleNamespace

import mpmath
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy.integrate import solve_ivp

from quadfast import riccati as rc


def rhs_factory(A, c=4.0):
    A = np.asarray(A)
    r = A.shape[0]

    def rhs(t, y):
        G = y.reshape(r, r)
        AG = A @ G
        return (c * (AG + AG.T - 2.0 * G @ AG)).ravel()

    return rhs


def ivp(A, G0, times, c=4.0, method="DOP853"):
    sol = solve_ivp(rhs_factory(A, c), (0.0, times[-1]), G0.ravel(), t_eval=times,
                    method=method, rtol=1e-11, atol=1e-13)
    assert sol.success, sol.message
    return sol.y.T.reshape(len(times), *G0.shape)


def haar(d, N, rng):
    Q, R = np.linalg.qr(rng.standard_normal((d, N)))
    return Q * np.sign(np.diag(R))


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize("r,N,alpha", [(6, 6, 1.0), (5, 8, 1.5), (4, 4, 0.3)])
def test_closed_form_integrators_and_solve_ivp_agree(r, N, alpha):
    # Full-rank starts (N >= r): a rank-deficient float G0 is not what the ODE solvers
    # see (see test_float_G0_is_not_rank_N). Tolerance 1e-8 (seen: ~4e-12).
    rng = np.random.default_rng(r * 100 + N)
    coef = rc.teacher_coef(r, alpha)
    start = rc.typical_start(4 * (r + N), N, r, rng)
    times = np.array([0.0, 0.05, 0.3, 1.0, 3.0, 10.0, 40.0, 150.0])
    G_cf = rc.solve(coef, times, factor=start)
    G_ivp = ivp(np.diag(coef), start.G, times)
    G_dm = rc.integrate(np.diag(coef), times, start.G)
    G_eig = rc.integrate(np.diag(coef), times, start.G, method="eigen")
    G_g0 = rc.solve(coef, times, G0=start.G)
    for G in (G_dm, G_eig, G_g0):
        assert_allclose(G, G_cf, rtol=0, atol=1e-8)
    assert_allclose(G_ivp, G_cf, rtol=0, atol=1e-8)
    assert_allclose(rc.risk_curve(coef, times, factor=start), rc.risk_from_G(coef, G_ivp), rtol=0, atol=1e-8)
    assert_allclose(rc.alignment_curve(coef, times, factor=start),
                    np.diagonal(G_ivp, axis1=1, axis2=2), rtol=0, atol=1e-8)


def test_general_symmetric_A_indefinite():
    # A = Q diag(w) Q^T with a negative eigenvalue; compare to solve_ivp (1e-8).
    rng = np.random.default_rng(7)
    r = 5
    Q = haar(r, r, rng)
    A = Q @ np.diag([0.9, 0.5, 0.2, -0.1, -0.4]) @ Q.T
    G0 = haar(r, r, rng) @ np.diag([0.3, 0.1, 0.05, 0.02, 0.01]) @ haar(r, r, rng).T
    G0 = 0.5 * (G0 + G0.T)
    G0 = G0 @ G0 / np.linalg.norm(G0 @ G0, 2) * 0.4  # PSD, eigenvalues in [0, 0.4]
    times = np.array([0.0, 0.2, 1.0, 5.0, 20.0])
    G_ivp = ivp(A, G0, times, c=2.5)
    G_dm, nsteps = rc.integrate(A, times, G0, c=2.5, return_steps=True)
    assert_allclose(G_dm, G_ivp, rtol=0, atol=1e-8)
    assert nsteps < 200  # the exact step is not limited by stiffness
    with pytest.raises(ValueError, match="positive semidefinite A"):
        rc.integrate(A, times, G0, method="eigen")


def test_semigroup_property():
    # G(t1 + t2) from the start equals G(t2) from the state at t1 (exact map; 1e-11).
    rng = np.random.default_rng(3)
    r, N = 12, 5
    coef = rc.teacher_coef(r, 1.0)
    s0 = rc.typical_start(200, N, r, rng)
    for t1, t2 in [(0.3, 0.7), (5.0, 30.0), (100.0, 1e4)]:
        s1 = rc.evolve_start(coef, t1, s0)
        G_a = rc.solve(coef, [t1 + t2], factor=s0)[0]
        G_b = rc.solve(coef, [t2], factor=s1)[0]
        assert_allclose(G_b, G_a, rtol=0, atol=1e-11)
        assert_allclose(s1.factor.T @ s1.factor + s1.complement.T @ s1.complement, np.eye(N), atol=1e-12)


def test_float_G0_is_not_rank_N():
    # The documented gotcha: G0 = U1 U1^T in floating point has eigenvalues ~1e-17 that
    # the dynamics amplify by exp(8 lambda t); rank=N restores the factor's answer.
    rng = np.random.default_rng(11)
    r, N = 6, 2
    coef = rc.teacher_coef(r, 1.0)
    s = rc.typical_start(100, N, r, rng)
    times = np.array([1.0, 500.0])
    G_f = rc.solve(coef, times, factor=s)
    G_0 = rc.solve(coef, times, G0=s.G)
    G_k = rc.solve(coef, times, G0=s.G, rank=N)
    assert_allclose(G_0[0], G_f[0], atol=1e-12)
    assert abs(np.trace(G_f[1]) - N) < 1e-9  # rank N, converged to a projection
    assert np.trace(G_0[1]) > N + 0.5  # rounding-level directions were learned
    assert_allclose(G_k, G_f, atol=1e-9)


# ------------------------------------------------------- extreme t, high precision
def mp_closed_form(coef, U1, U2, t, c=4):
    """G(t) = E U1 C^{-1} U1^T E, C = U1^T E^2 U1 + U2^T U2, with enough digits.

    C adds O(1) terms to terms of size exp(2 c lambda_1 t), so the working precision
    must exceed 2 c lambda_1 t / ln 10 digits; 40 more are kept.
    """
    dps = int(2 * c * max(coef) * t / np.log(10)) + 40
    with mpmath.workdps(dps):
        r, N = U1.shape
        E = [mpmath.exp(c * mpmath.mpf(float(l)) * mpmath.mpf(t)) for l in coef]
        B = mpmath.matrix(r, N)
        for i in range(r):
            for j in range(N):
                B[i, j] = E[i] * mpmath.mpf(float(U1[i, j]))
        U2m = mpmath.matrix(U2.tolist())
        C = B.T * B + U2m.T * U2m
        G = B * mpmath.inverse(C) * B.T
        return np.array([[float(G[i, j]) for j in range(r)] for i in range(r)])


@pytest.mark.parametrize("t", [1e3, 1e5, 1e6])
@pytest.mark.parametrize("case", ["spread", "ties_and_zero_row", "wide"])
def test_mpmath_extreme_times(case, t):
    # Rates spread over 2.5 decades so that at t = 1e6 the slow features are mid-emergence
    # while exp(8 lambda_1 t) = exp(4000) ~ 1e1737 (float64 overflows at exp(709)); mpmath
    # needs ~1800 digits for that (exp(8e6) would need 3.5 million: the t = 1e6, lambda = 1
    # case is checked against its exact limit in test_no_overflow_r4096_t1e6).
    # Tolerance 1e-12 abs.
    rng = np.random.default_rng(5)
    if case == "spread":
        coef = np.array([5e-4, 3e-6, 2e-6, 1e-6, 0.0])
        U1 = haar(12, 3, rng)[:5] * 0.5
    elif case == "ties_and_zero_row":
        coef = np.array([5e-4, 5e-4, 4e-6, 4e-6, 1e-6])
        U1 = haar(12, 3, rng)[:5]
        U1[0] = 0.0  # feature 1 has no overlap: never learned, needs the pivoted path
    else:
        coef = np.array([3e-4, 2e-6, 1e-6])
        U1 = haar(10, 5, rng)[:3]  # N > r
    s = rc.start_from_W(U1, r=U1.shape[0])  # complement (I - U1^T U1)^{1/2}
    G = rc.solve(coef, [t], factor=s)[0]
    G_mp = mp_closed_form(coef, s.factor, s.complement, t)
    assert np.all(np.isfinite(G))
    assert_allclose(G, G_mp, rtol=0, atol=1e-12)
    assert_allclose(rc.risk_curve(coef, [t], factor=s)[0], rc.risk_from_G(coef, G_mp), atol=1e-12)
    if case == "ties_and_zero_row":
        assert np.all(G[0] == 0.0)  # an exactly zero overlap stays exactly zero


def test_no_overflow_r4096_t1e6():
    # r = 4096, t = 1e6: every entry finite; at that time the width-16 student has
    # converged to the top-16 coordinates (gaps 8 (lambda_16 - lambda_17) t ~ 1e4), so the
    # alignment is exactly (1,..,1,0,..,0) up to 1e-12.
    rng = np.random.default_rng(0)
    r, N = 4096, 16
    coef = rc.teacher_coef(r, 1.0)
    s = rc.typical_start(10**5, N, r, rng)
    times = np.array([0.0, 1.0, 1e3, 1e6])
    R = rc.risk_curve(coef, times, factor=s)
    A = rc.alignment_curve(coef, times, factor=s)
    assert np.all(np.isfinite(R)) and np.all(np.isfinite(A))
    assert np.all((R >= -1e-12) & (R <= 1 + 1e-12))
    assert np.all((A >= 0) & (A <= 1 + 1e-12))
    expect = np.zeros(r)
    expect[:N] = 1.0
    assert_allclose(A[-1], expect, atol=1e-12)
    assert_allclose(R[-1], 1 - np.sum(coef[:N] ** 2), atol=1e-12)
    assert_allclose(A[0], np.sum(s.factor**2, axis=1), atol=1e-14)


# ------------------------------------------------------------ kernel twins
def test_pivoted_lq_twin_and_structure():
    rng = np.random.default_rng(2)
    m, n = 14, 5
    Z = rng.standard_normal((m, n))
    Z[0] = 0.0
    Z[3] = 2.0 * Z[1] - Z[2]  # dependent on earlier rows
    Z[4] = Z[1]
    L, piv = rc._pivoted_lq_jit(np.ascontiguousarray(Z), rc.DROP_TOL)
    L2, piv2 = rc._pivoted_lq_numpy(Z, rc.DROP_TOL)
    assert_allclose(L, L2, rtol=0, atol=1e-13)
    assert np.array_equal(piv, piv2)
    assert np.array_equal(piv, [1, 2, 5, 6, 7])
    assert_allclose(L @ L.T, Z @ Z.T, atol=1e-12)  # Z = L Q^T, Q orthogonal
    for k, p in enumerate(piv):
        assert np.all(L[:p, k] == 0.0)  # structural zeros above each pivot (exact)


def test_davison_maki_twin():
    rng = np.random.default_rng(4)
    r = 6
    Q = haar(r, r, rng)
    w = np.array([1.0, 0.6, 0.3, 0.1, 0.0, -0.2])
    G0 = rc.typical_start(40, r, r, rng).G
    times = np.array([0.0, 0.5, 3.0, 30.0, 300.0])
    out_j = np.empty((times.size, r, r))
    out_n = np.empty_like(out_j)
    for tol in (0.0, 1e-12):
        n_j = rc._dm_integrate_jit(w, Q, G0, times, 4.0, 8.0, tol, out_j)
        n_n = rc._dm_integrate_numpy(w, Q, G0, times, 4.0, 8.0, tol, out_n)
        assert n_j == n_n
        # same algorithm, different association of E Y E and of the exponentials;
        # rounding differences of 1e-16 per step grow to ~5e-11 over the run
        assert_allclose(out_j, out_n, rtol=0, atol=2e-10)


def test_comparison_kernel_twin():
    alpha = np.array([0.3, 1.0, 1.5, 2.0])
    r = np.array([7, 50, 1, 200], dtype=np.int64)
    width = np.array([3, 60, 2, 20], dtype=np.int64)
    g0 = np.array([[0.01, 0.05, 0.0], [0.02, 0.1, 0.001], [0.3, 0.5, 0.1], [1e-4, 2e-3, 0.0]])
    times = np.geomspace(1e-2, 1e5, 40)
    out_j = np.empty((4, 3, times.size))
    out_n = np.empty_like(out_j)
    rc._comparison_risk_kernel(alpha, r, width, g0, times, 4.0, out_j)
    rc._comparison_risk_numpy(alpha, r, width, g0, times, 4.0, out_n)
    assert_allclose(out_j, out_n, rtol=0, atol=1e-13)


# ------------------------------------------------------------ comparison systems
def loewner_min(X):
    return np.linalg.eigvalsh(0.5 * (X + X.T))[0]


@pytest.mark.parametrize("r,N", [(8, 8), (8, 11), (10, 4)])
def test_comparison_systems_sandwich(r, N):
    # diag(g(t; mu_min)) <= G(t) <= diag(g(t; mu_max)) in the Loewner order, and the
    # risk bounds; eigenvalue tolerance 1e-12.
    rng = np.random.default_rng(r + N)
    coef = rc.teacher_coef(r, 1.0)
    s = rc.typical_start(60, N, r, rng)
    times = np.concatenate([[0.0], np.geomspace(0.01, 1e4, 30)])
    G = rc.solve(coef, times, factor=s)
    b = rc.comparison_bounds(coef, times, factor=s)
    if N < r:
        assert b.mu_min == 0.0 and np.all(b.lower == 0.0)
    else:
        assert b.mu_min > 0.0
    R = rc.risk_curve(coef, times, factor=s)
    for k in range(times.size):
        assert loewner_min(G[k] - np.diag(b.lower[k])) >= -1e-12
        assert loewner_min(np.diag(b.upper[k]) - G[k]) >= -1e-12
    assert np.all(b.risk_lower <= R + 1e-12) and np.all(R <= b.risk_upper + 1e-12)
    # the bounds are not vacuous: the upper one is attained at t = 0 in some direction
    assert abs(loewner_min(np.diag(b.upper[0]) - G[0])) < 1e-12


def test_flow_is_loewner_monotone():
    # G0 <= G0' implies G(t) <= G'(t) (the fact behind the sandwich), 1e-12.
    rng = np.random.default_rng(9)
    r = 6
    coef = rc.teacher_coef(r, 0.8)
    for _ in range(5):
        X = rng.standard_normal((r, r))
        G0 = X @ X.T
        G0 *= 0.5 / np.linalg.eigvalsh(G0)[-1]
        Y = rng.standard_normal((r, 2))
        G1 = G0 + 0.4 * Y @ Y.T / np.linalg.eigvalsh(Y @ Y.T)[-1]
        times = np.geomspace(1e-3, 1e3, 15)
        Ga = rc.solve(coef, times, G0=G0)
        Gb = rc.solve(coef, times, G0=G1)
        for k in range(times.size):
            assert loewner_min(Gb[k] - Ga[k]) >= -1e-12


def test_heuristic_start_is_not_a_bound():
    # g_j(0) = N/d (the papers' typical diagonal) is neither an upper nor a lower bound
    # for a given draw: this is why comparison_bounds uses the extreme eigenvalues.
    rng = np.random.default_rng(1)
    r = N = 10
    d = 100
    coef = rc.teacher_coef(r, 1.0)
    s = rc.typical_start(d, N, r, rng)
    times = np.geomspace(0.01, 1e3, 40)
    G = rc.solve(coef, times, factor=s)
    g = rc.logistic(coef, times, N / d)
    gaps = [loewner_min(np.diag(g[k]) - G[k]) for k in range(times.size)]
    gaps2 = [loewner_min(G[k] - np.diag(g[k])) for k in range(times.size)]
    assert min(gaps) < -1e-6 and min(gaps2) < -1e-6


def test_logistic_closed_form():
    # d/dt g = 8 lambda g (1 - g) checked by central differences (rtol 1e-6) and limits.
    lam = np.array([0.0, 0.1, 1.0])
    t = np.array([0.0, 0.5, 1.0, 1e6])
    g = rc.logistic(lam, t, 0.01)
    assert_allclose(g[0], 0.01)
    assert_allclose(g[-1], [0.01, 1.0, 1.0])
    h = 1e-6
    gp = (rc.logistic(lam, t[1:3] + h, 0.01) - rc.logistic(lam, t[1:3] - h, 0.01)) / (2 * h)
    assert_allclose(gp, 8 * lam * g[1:3] * (1 - g[1:3]), rtol=1e-6, atol=1e-12)
    assert np.all(rc.logistic(lam, t, 0.0) == 0.0)


def test_comparison_risk_vectorised():
    # Many configurations in one call; the prediction from g0 = N/d equals the
    # single-configuration computation (1e-13), and lower <= upper.
    alpha = np.array([0.3, 1.0, 1.5])[:, None]
    d = np.array([10**4, 10**6])[None, :]
    res = rc.comparison_risk(alpha, 0.5, d, 64, np.geomspace(1e-1, 1e5, 25))
    assert res.prediction.shape == (6, 25)
    assert np.array_equal(res.r, [100, 1000, 100, 1000, 100, 1000])
    assert np.all(res.lower <= res.upper + 1e-13)
    k = 3  # alpha = 1.0, d = 1e6
    lam = rc.teacher_coef(1000, 1.0)
    g = rc.logistic(lam, np.geomspace(1e-1, 1e5, 25), 64 / 1e6)
    g[:, 64:] = 0
    assert_allclose(res.prediction[k], 1 - g**2 @ lam**2, atol=1e-13)


# ------------------------------------------------------------ initial conditions
def test_typical_start_law():
    # (1) exact identities; (2) W_11^2 ~ Beta(1/2, (d-1)/2) for a Haar frame (KS, 3000
    # draws, p > 1e-3); (3) the top eigenvalue of U1^T U1 has the same law as with the
    # explicit QR of a d x N Gaussian (two-sample KS, 1500 draws each, p > 1e-3).
    rng = np.random.default_rng(123)
    d, N, r = 15, 3, 4
    s = rc.typical_start(d, N, r, rng)
    assert_allclose(s.factor.T @ s.factor + s.complement.T @ s.complement, np.eye(N), atol=1e-13)
    x = np.array([rc.typical_start(d, N, r, rng).factor[0, 0] ** 2 for _ in range(3000)])
    assert scipy.stats.kstest(x, scipy.stats.beta(0.5, (d - 1) / 2).cdf).pvalue > 1e-3
    top_b = [np.linalg.eigvalsh(rc.typical_start(d, N, r, rng).G)[-1] for _ in range(1500)]
    def top_qr():
        W = haar(d, N, rng)
        return np.linalg.eigvalsh(W[:r] @ W[:r].T)[-1]

    top_q = [top_qr() for _ in range(1500)]
    assert scipy.stats.ks_2samp(top_b, top_q).pvalue > 1e-3
    # the test can fail: a wrong law (d too small by 2) is rejected
    x_bad = np.array([rc.typical_start(d - 8, N, r, rng).factor[0, 0] ** 2 for _ in range(3000)])
    assert scipy.stats.kstest(x_bad, scipy.stats.beta(0.5, (d - 1) / 2).cdf).pvalue < 1e-3


def test_typical_start_large_d_is_cheap():
    # d = 1e6, N = r = 300: no d x N matrix; mean diagonal of G0 is N/d (rel. 5%).
    s = rc.typical_start(10**6, 300, 300, np.random.default_rng(0))
    assert s.factor.shape == (300, 300) and s.complement.shape == (300, 300)
    assert_allclose(np.mean(np.sum(s.factor**2, axis=1)), 300 / 1e6, rtol=0.05)


def test_start_from_W_and_simulator():
    rng = np.random.default_rng(8)
    d, N, r = 30, 4, 3
    W = haar(d, N, rng)
    Theta = haar(d, r, rng)
    sA = rc.start_from_W(W, directions=Theta)
    sB = rc.start_from_W(W, directions=Theta, complement="exact")
    assert_allclose(sA.factor, Theta.T @ W, atol=1e-14)
    assert_allclose(sA.complement.T @ sA.complement, sB.complement.T @ sB.complement, atol=1e-13)
    sim = SimpleNamespace(W=W, teacher=SimpleNamespace(coef=np.array([0.8, 0.5, 0.33]), d=d, directions=None))
    coef, s = rc.start_from_simulator(sim)
    assert_allclose(s.factor, W[:r])
    sim.teacher.directions = Theta
    coef, s = rc.start_from_simulator(sim)
    assert_allclose(s.factor, Theta.T @ W, atol=1e-14)
    times = [0.0, 2.0]
    assert_allclose(rc.solve(coef, times, factor=s), rc.solve(coef, times, factor=sB), atol=1e-12)


# ------------------------------------------------------------------- bad input
GOOD_COEF = np.array([0.8, 0.5, 0.3])
GOOD_U1 = np.array([[0.1, 0.0], [0.0, 0.2], [0.1, 0.1]])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(coef=[0.5, -0.1, 0.2]), ValueError, "coef must be non-negative"),
        (dict(coef=[0.5, np.nan, 0.2]), ValueError, "coef must be finite"),
        (dict(coef=[0.5, np.inf, 0.2]), ValueError, "coef must be finite"),
        (dict(coef=["a", "b", "c"]), TypeError, "coef must be an array of real numbers"),
        (dict(coef=[[0.5, 0.1, 0.2]]), ValueError, "coef must be a non-empty 1-d"),
        (dict(factor=np.zeros((2, 2))), ValueError, r"factor must have shape \(r, N\) = \(3, N\)"),
        (dict(factor=np.zeros(3)), ValueError, "factor must have shape"),
        (dict(factor=np.eye(3) * 1.1), ValueError, "factor must satisfy U1.T U1 <= I|factor must satisfy"),
        (dict(factor=None, G0=np.array([[0.1, 0.05, 0], [0, 0.1, 0], [0, 0, 0.1]])), ValueError, "G0 must be symmetric"),
        (dict(factor=None, G0=np.diag([0.1, -0.2, 0.3])), ValueError, "G0 must be positive semidefinite"),
        (dict(factor=None, G0=np.diag([0.1, 1.2, 0.3])), ValueError, r"G0 must be positive semidefinite with eigenvalues in \[0, 1\]"),
        (dict(factor=None, G0=np.eye(2) * 0.1), ValueError, r"G0 must have shape \(3, 3\)"),
        (dict(times=[0.0, 2.0, 1.0]), ValueError, "times must be sorted"),
        (dict(times=[-1.0, 2.0]), ValueError, "times must be >= 0"),
        (dict(times=[0.0, np.nan]), ValueError, "times must be finite"),
        (dict(factor=None), TypeError, "exactly one of factor= and G0="),
        (dict(G0=np.eye(3) * 0.1), TypeError, "exactly one of factor= and G0="),
    ],
)
@pytest.mark.parametrize("fn", [rc.solve, rc.risk_curve, rc.alignment_curve, rc.comparison_bounds])
def test_bad_input_names_the_parameter(fn, kwargs, exc, match):
    args = dict(coef=GOOD_COEF, times=[0.0, 1.0], factor=GOOD_U1)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fn(**args)


def test_bad_input_integrate_and_complement():
    G0 = np.eye(3) * 0.1
    with pytest.raises(ValueError, match="A must be symmetric"):
        rc.integrate(np.triu(np.ones((3, 3))), [1.0], G0)
    with pytest.raises(ValueError, match="A must be finite"):
        rc.integrate(np.diag([1.0, np.nan, 0.0]), [1.0], G0)
    with pytest.raises(ValueError, match="G0 must be positive semidefinite"):
        rc.integrate(np.eye(3), [1.0], -G0)
    with pytest.raises(ValueError, match="times must be sorted"):
        rc.integrate(np.eye(3), [2.0, 1.0], G0)
    with pytest.raises(ValueError, match="complement must have shape"):
        rc.solve(GOOD_COEF, [1.0], factor=GOOD_U1, complement=np.eye(3))
    with pytest.raises(ValueError, match="complement must satisfy"):
        rc.solve(GOOD_COEF, [1.0], factor=GOOD_U1, complement=np.eye(2))
    with pytest.raises(ValueError, match="d must be >= r \\+ width"):
        rc.typical_start(10, 8, 4)


@settings(max_examples=25, deadline=None)
@given(
    r=st.integers(1, 7),
    N=st.integers(1, 7),
    alpha=st.floats(0.0, 3.0),
    logt=st.floats(-3.0, 6.0),
    seed=st.integers(0, 2**31),
)
def test_properties_risk_and_alignment_ranges(r, N, alpha, logt, seed):
    # For any start and time: 0 <= A_j <= 1, sum_j A_j <= N, risk in [0, 1] (1e-12),
    # and the risk equals the one computed from solve's G (1e-12).
    rng = np.random.default_rng(seed)
    coef = rc.teacher_coef(r, alpha)
    s = rc.typical_start(r + N + 3, N, r, rng)
    t = [10.0**logt]
    A = rc.alignment_curve(coef, t, factor=s)[0]
    R = rc.risk_curve(coef, t, factor=s)[0]
    G = rc.solve(coef, t, factor=s)[0]
    assert np.all(A >= -1e-15) and np.all(A <= 1 + 1e-12) and A.sum() <= N + 1e-10
    assert -1e-12 <= R <= 1 + 1e-12
    assert abs(R - rc.risk_from_G(coef, G)) < 1e-12
