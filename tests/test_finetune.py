"""Phase-II least-squares fine-tune (quadfast.finetune): against an explicit lstsq on the
vectorised design, the dense d x d risk, the n^-1/2 statistical rate, and bad input."""
import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref
from quadfast._ext import core as _core


def _explicit_teacher(d, r, noise, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return qf.Teacher(qf.power_law_coef(r, 1.0), directions=Q, noise=noise)


@pytest.fixture(scope="module")
def sim():
    teacher = qf.Teacher(qf.power_law_coef(5, 1.0), d=24, noise=0.1)
    s = qf.StiefelSGD(teacher, 4, lr=1e-3, seed=3)
    s.run(300)
    return s


@pytest.mark.parametrize("explicit", [False, True])
def test_matches_explicit_lstsq(explicit):
    teacher = _explicit_teacher(20, 5, 0.2, 1) if explicit else qf.Teacher(qf.power_law_coef(5, 1.0), d=20, noise=0.2)
    s = qf.StiefelSGD(teacher, 4, lr=1e-3, seed=5)
    s.run(100)
    res = qf.finetune(s, n=300, seed=2, tol=1e-13)
    assert res.converged and res.residual <= 1e-13
    # the fresh samples are Teacher.sample's streams of the derived key
    X, y = teacher.sample(300, seed=res.sample_seed)
    B = ref.finetune_lstsq(X @ s.W, y)
    np.testing.assert_allclose(res.B, B, rtol=0, atol=1e-10 * np.abs(B).max())
    np.testing.assert_array_equal(res.B, res.B.T)


def test_user_samples_equal_fresh(sim):
    res = qf.finetune(sim, n=200, seed=7, tol=1e-12)
    X, y = sim.teacher.sample(200, seed=res.sample_seed)
    own = qf.finetune(sim, X=X, y=y, tol=1e-12)
    assert own.sample_seed is None and own.n == 200
    np.testing.assert_allclose(own.B, res.B, atol=1e-10)


def test_samples_bit_identical_across_threads(sim):
    W = np.ascontiguousarray(sim.W)
    out = []
    for threads in (1, 2, 3):
        Z, y = np.empty((1000, W.shape[1])), np.empty(1000)
        _core.finetune_project(W, sim.teacher.coef, None, sim.teacher.noise, 99, 5, Z, y, threads)
        out.append((Z, y))
    for Z, y in out[1:]:
        np.testing.assert_array_equal(Z, out[0][0])
        np.testing.assert_array_equal(y, out[0][1])
    X, ys = sim.teacher.sample(1000, seed=99, start=5)
    np.testing.assert_allclose(out[0][0], X @ W, atol=1e-12)
    np.testing.assert_allclose(out[0][1], ys, atol=1e-12)


def test_risk_formula_against_dense():
    rng = np.random.default_rng(4)
    teacher = _explicit_teacher(30, 6, 0.0, 2)
    for W in (qf.haar_stiefel(30, 5, seed=1), rng.standard_normal((30, 5))):  # orthonormal or not
        A = rng.standard_normal((5, 5))
        B = A + A.T
        got = qf.radial_risk(teacher, W, B)
        want = ref.finetune_risk_dense(W, B, teacher.theta(), teacher.coef)
        assert got == pytest.approx(want, rel=1e-12)
    # the population optimum W^T M* W has the risk R(W) of MODEL.md §1
    W = qf.haar_stiefel(30, 5, seed=2)
    Ms = (teacher.theta() * teacher.coef) @ teacher.theta().T
    assert qf.radial_risk(teacher, W, W.T @ Ms @ W) == pytest.approx(teacher.risk_of_overlap(teacher.project(W)), abs=1e-13)


def test_psd_part(sim):
    res = qf.finetune(sim, n=150, seed=3)
    ev, Q = np.linalg.eigh(res.B)
    Bp = (Q * np.clip(ev, 0, None)) @ Q.T
    np.testing.assert_allclose(res.Omega, res.Omega.T, atol=1e-14)
    np.testing.assert_allclose(res.Omega @ res.Omega, Bp, atol=1e-12)
    assert res.risk_psd == pytest.approx(qf.radial_risk(sim.teacher, sim.W, Bp), rel=1e-12)


def test_error_shrinks_like_n_to_minus_half():
    """||B - W^T M* W||_F against n, 6 seeds per n: the log-log slope of the mean error
    must lie within 0.12 of -1/2 (the least-squares rate; seen: -0.50 +- 0.03)."""
    teacher = qf.Teacher(qf.power_law_coef(4, 1.0), d=12, noise=0.3)
    s = qf.StiefelSGD(teacher, 3, lr=1e-3, seed=11)
    Bstar = s.W.T @ (teacher.theta() * teacher.coef) @ teacher.theta().T @ s.W
    ns = np.array([1000, 4000, 16000])
    err = [np.mean([np.linalg.norm(qf.finetune(s, n=int(n), seed=k).B - Bstar) for k in range(6)]) for n in ns]
    slope = np.polyfit(np.log(ns), np.log(err), 1)[0]
    assert abs(slope + 0.5) < 0.12, (slope, err)
    # and the risk approaches the optimum R(W)
    res = qf.finetune(s, n=64000, seed=1)
    assert res.risk - s.risk() < 0.01 * s.risk()


def test_underdetermined_returns_symmetric_fit():
    teacher = qf.Teacher(qf.power_law_coef(8, 1.0), d=40, noise=0.0)
    s = qf.StiefelSGD(teacher, 20, lr=1e-3, seed=1)
    res = qf.finetune(s, n=100, seed=0, tol=1e-10)  # 100 samples, 210 unknowns
    np.testing.assert_array_equal(res.B, res.B.T)
    Z = teacher.sample(100, seed=res.sample_seed)[0] @ s.W
    y = teacher.sample(100, seed=res.sample_seed)[1]
    fit = np.einsum("si,ij,sj->s", Z, res.B, Z) - np.trace(res.B)
    np.testing.assert_allclose(fit, y, atol=1e-6)  # interpolates: n < N(N+1)/2


def test_bad_input(sim):
    X, y = sim.teacher.sample(50, seed=1)
    with pytest.raises(TypeError, match="sim"):
        qf.finetune(sim.W)
    with pytest.raises(ValueError, match="n"):
        qf.finetune(sim, n=0)
    with pytest.raises(TypeError, match="n"):
        qf.finetune(sim, n=1.5)
    with pytest.raises(ValueError, match="n"):
        qf.finetune(sim, n=50, X=X, y=y)
    with pytest.raises(ValueError, match="X, y"):
        qf.finetune(sim, X=X)
    with pytest.raises(ValueError, match="X"):
        qf.finetune(sim, X=X[:, :-1], y=y)
    with pytest.raises(ValueError, match="y"):
        qf.finetune(sim, X=X, y=y[:-1])
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="X"):
        qf.finetune(sim, X=Xn, y=y)
    with pytest.raises(ValueError, match="tol"):
        qf.finetune(sim, n=10, tol=0.0)
    with pytest.raises(ValueError, match="seed"):
        qf.finetune(sim, n=10, seed=-1)
    with pytest.raises(ValueError, match="threads"):
        qf.finetune(sim, n=10, threads=0)


def test_width_1024_runs_matrix_free_and_lowers_the_loss():
    """N = 1024: N(N+1)/2 = 524,800 unknowns, so the design matrix (n x 524,800) is never
    formed; a few CG iterations must lower the least-squares objective below that of the
    moment estimator they start from, with memory O(n N)."""
    d, N, n = 2048, 1024, 3000
    teacher = qf.Teacher(qf.power_law_coef(64, 1.0), d=d, noise=0.1)
    sim = qf.StiefelSGD(teacher, N, lr=1e-3 / d, seed=3)
    X, y = teacher.sample(n, seed=5)
    res = qf.finetune(sim, X=X, y=y, maxiter=4)
    assert res.B.shape == (N, N) and np.array_equal(res.B, res.B.T) and np.isfinite(res.B).all()
    Z = X @ sim.W

    def loss(B):
        f = np.einsum("ij,ij->i", Z @ B, Z) - np.trace(B)
        return float(np.mean((f - y) ** 2))

    B0 = (Z.T * y) @ Z / (2 * n) - np.sum(y) / (2 * n) * np.eye(N)  # the moment estimator
    assert loss(res.B) < 0.9 * loss(B0)
