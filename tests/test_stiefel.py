"""The Stiefel kernel against the NumPy reference, closed forms and statistics.

Tolerances: exact-trajectory comparisons use small lr*d and short horizons, where two
correct implementations agree to rounding (MODEL.md §2: chaos separates them later).
"""
import pickle

import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref


def explicit_teacher(base: qf.Teacher, seed: int = 11) -> qf.Teacher:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((base.d, base.r)))
    return qf.Teacher(base.coef, directions=q, noise=base.noise)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_kernel_equals_reference_on_same_samples(batch, frame):
    d, N = 96, 6
    teacher = qf.Teacher.power_law(d, 0.4, 1.0, noise=0.05)
    if frame == "explicit":
        teacher = explicit_teacher(teacher)
    lr = 0.02 / d
    sim = qf.StiefelSGD(teacher, N, lr=lr, batch=batch, seed=7)
    W0 = sim.W.copy()
    X, y = teacher.sample(250 * batch, seed=7)
    sim.step(X, y)
    W_ref = ref.stiefel_sgd(W0, X, y, lr, batch)
    np.testing.assert_allclose(sim.W, W_ref, rtol=0, atol=1e-10)
    assert sim.steps_done == 250


@pytest.mark.parametrize("batch", [1, 4])
def test_in_kernel_labels_equal_teacher_labels(batch):
    """run() draws the same samples as Teacher.sample(seed) and labels them like the
    teacher does (noise included); the reference fed those samples agrees to 1e-10."""
    d, N = 80, 5
    teacher = explicit_teacher(qf.Teacher.power_law(d, 0.4, 1.2, noise=0.3))
    lr = 0.01 / d
    sim = qf.StiefelSGD(teacher, N, lr=lr, batch=batch, seed=3)
    W0 = sim.W.copy()
    sim.run(120)
    X, y = teacher.sample(120 * batch, seed=3)
    np.testing.assert_allclose(sim.W, ref.stiefel_sgd(W0, X, y, lr, batch), rtol=0, atol=1e-10)


@pytest.mark.parametrize("batch", [1, 3])
def test_float32_agrees_with_float64_reference(batch):
    d, N = 96, 6
    teacher = qf.Teacher.power_law(d, 0.4, 1.0)
    lr = 0.02 / d
    sim = qf.StiefelSGD(teacher, N, lr=lr, batch=batch, seed=2, dtype=np.float32)
    assert sim.W.dtype == np.float32
    W0 = sim.W.astype(np.float64)
    X, y = teacher.sample(200 * batch, seed=2, dtype=np.float32)
    sim.step(X, y)
    W_ref = ref.stiefel_sgd(W0, X.astype(np.float64), y.astype(np.float64), lr, batch)
    np.testing.assert_allclose(sim.W, W_ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_single_step_equals_polar_factor(batch):
    """One step at small to large lr: the closed forms equal the polar factor
    W~ (W~^T W~)^{-1/2} to rounding.  The truth is the SVD polar U V^T (error ~ eps kappa);
    tolerance 1e-14 (1 + kappa(W~)) + 8 eps ||W~||_2: at lr = 30 the step has norm ~1e3 and
    the closed forms round at eps ||W~|| (over 120 batch-5 samples, NumPy- and
    quadfast-drawn, the error stays below 0.61 of this tolerance, while 1e-14 (1 + kappa)
    alone fails for 5 of 60 NumPy samples).  The eigh-based reference squares the condition
    number, so it is compared only where kappa is small."""
    d, N = 40, 5
    teacher = qf.Teacher.power_law(d, 0.4, 1.0)
    for lr in (0.05, 1.0, 30.0):
        sim = qf.StiefelSGD(teacher, N, lr=lr, batch=batch, seed=5)
        W0 = sim.W.copy()
        X, y = teacher.sample(batch, seed=99)
        sim.step(X, y)
        W_tilde = W0 - lr * ref.riemannian_gradient(W0, X, y)
        U, S, Vt = np.linalg.svd(W_tilde, full_matrices=False)
        kappa = S.max() / S.min()
        tol = 1e-14 * (1 + kappa) + 8 * np.finfo(float).eps * S.max()
        np.testing.assert_allclose(sim.W, U @ Vt, rtol=0, atol=tol)
        if kappa < 20:
            np.testing.assert_allclose(sim.W, ref.polar(W_tilde), rtol=0, atol=1e-13)


@pytest.mark.parametrize("batch", [1, 3])
def test_zero_sample_changes_nothing(batch):
    d, N = 30, 4
    teacher = qf.Teacher(np.ones(3) / np.sqrt(3), d=d)
    W0 = np.zeros((d, N))
    W0[np.arange(N) + 10, np.arange(N)] = 1.0  # exact orthonormal columns e_10..e_13
    X = np.random.default_rng(0).standard_normal((batch, d))
    X[:, 10:14] = 0.0  # W^T x = 0 exactly
    sim = qf.StiefelSGD(teacher, N, lr=0.3, batch=batch, W0=W0)
    sim.step(X)
    assert np.array_equal(sim.W, W0)


@pytest.mark.parametrize("block", [None, 1], ids=["default-blocked", "sequential"])
def test_runs_are_bit_identical_across_repeats_chunks_and_pickles(block):
    """Repeats, chunks and a pickle in the middle give the same bits: at any split point
    for the sequential kernel, at multiples of split_period for the blocked engine (the
    default, block 16 here, with W factored: formation period 128)."""
    teacher = qf.Teacher.power_law(128, 0.5, 1.0, noise=0.1)
    kw = dict(width=8, lr=0.05 / 128, seed=42, block=block)
    a = qf.StiefelSGD(teacher, **kw)
    a.run(3000)
    k = a.split_period
    assert a.block == (1 if block == 1 else 16) and k == (1 if block == 1 else 128)
    b = qf.StiefelSGD(teacher, **kw)
    for n in (k, 999 // k * k, 1000 // k * k + k):
        b.run(n)
    b.run(3000 - b.steps_done)
    c = qf.StiefelSGD(teacher, **kw)
    c.run(1234 // k * k)
    c = pickle.loads(pickle.dumps(c))
    c.run(3000 - c.steps_done)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.W, c.W)
    assert a.reortho_stats == c.reortho_stats
    other_seed = qf.StiefelSGD(teacher, **{**kw, "seed": 43})
    other_seed.run(3000)
    assert not np.allclose(a.W, other_seed.W)


def test_pickle_continues_across_reorthonormalisations():
    teacher = qf.Teacher.power_law(64, 0.5, 1.0)
    a = qf.StiefelSGD(teacher, 4, lr=0.05 / 64, seed=1, reortho_tol=1e-14, batch=2)
    a.run(5000)
    b = qf.StiefelSGD(teacher, 4, lr=0.05 / 64, seed=1, reortho_tol=1e-14, batch=2)
    b.run(2222 // b.split_period * b.split_period)  # batch 2: 8 steps per block, W factored: 64
    b = pickle.loads(pickle.dumps(b))
    b.run(5000 - b.steps_done)
    assert a.reortho_stats["count"] > 10
    assert np.array_equal(a.W, b.W)


def test_run_equals_step_with_teacher_samples():
    teacher = qf.Teacher.power_law(64, 0.5, 1.0, noise=0.2)
    a = qf.StiefelSGD(teacher, 5, lr=1e-3, seed=9, batch=2)
    b = qf.StiefelSGD(teacher, 5, lr=1e-3, seed=9, batch=2)
    a.run(400)
    X, _ = teacher.sample(800, seed=9)
    b.step(X)  # labels (and their noise) from the kernel
    assert np.array_equal(a.W, b.W)


def test_projection_is_a_snapshot():
    teacher = qf.Teacher.power_law(50, 0.5, 1.0)
    sim = qf.StiefelSGD(teacher, 3, lr=1e-3)
    U = sim.projection()
    before = U.copy()
    sim.run(50)
    assert np.array_equal(U, before) and not np.array_equal(U, sim.projection())


def test_weights_are_updated_in_place():
    teacher = qf.Teacher.power_law(50, 0.5, 1.0)
    sim = qf.StiefelSGD(teacher, 3, lr=1e-3)
    view = sim.W
    before = view.copy()
    sim.run(10)
    assert sim.W is view and not np.array_equal(view, before)


@pytest.mark.slow
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_reorthonormalisation_keeps_drift_below_tolerance_for_1e7_steps(dtype, tol):
    """Over 10^7 steps at lr*d = 0.05 (where uncorrected drift grows geometrically, see the
    control test below) the largest measured max|W^T W - I| stays below tol."""
    d, N = 24, 4
    teacher = qf.Teacher.power_law(d, 0.45, 1.0)
    sim = qf.StiefelSGD(teacher, N, lr=0.05 / d, seed=0, dtype=dtype)
    sim.run(10_000_000)
    st = sim.reortho_stats
    assert st["count"] > 0
    assert st["max_drift"] < tol
    assert sim.orth_error() < tol


def test_without_reorthonormalisation_drift_exceeds_tolerance():
    """Control: the closed forms alone drift (MODEL.md §2), so the policy is needed."""
    d, N = 500, 8
    teacher = qf.Teacher.power_law(d, 0.335, 1.0)
    sim = qf.StiefelSGD(teacher, N, lr=0.05 / d, seed=1, reortho=False)
    sim.run(60_000)
    assert sim.orth_error() > 1e-12
    fixed = qf.StiefelSGD(teacher, N, lr=0.05 / d, seed=1)
    fixed.run(60_000)
    assert fixed.reortho_stats["max_drift"] < 1e-12 and fixed.orth_error() < 1e-12


def test_overlap_risk_and_alignment_definitions():
    teacher = explicit_teacher(qf.Teacher.power_law(60, 0.5, 1.0))
    sim = qf.StiefelSGD(teacher, 5, lr=1e-3, seed=4)
    sim.run(500)
    theta, lam = teacher.theta(), teacher.coef
    G = theta.T @ sim.W @ sim.W.T @ theta
    np.testing.assert_allclose(sim.overlap(), G, atol=1e-13)
    np.testing.assert_allclose(sim.alignment(), np.diag(G), atol=1e-13)
    GL = G @ np.diag(lam)
    assert sim.risk() == pytest.approx(1 - np.trace(GL @ GL) / np.sum(lam**2), abs=1e-13)
    # the risk is the normalised excess risk of the optimally refitted student P M* P
    P = sim.W @ sim.W.T
    M = theta @ np.diag(lam) @ theta.T
    assert sim.risk() == pytest.approx(np.sum((P @ M @ P - M) ** 2) / np.sum(M**2), abs=1e-12)


@pytest.mark.parametrize("block", [None, 1], ids=["default-blocked", "sequential"])
def test_trajectory_records(block):
    teacher = qf.Teacher.power_law(100, 0.5, 1.0)
    sim = qf.StiefelSGD(teacher, 10, lr=2e-4, seed=0, block=block)
    rec = qf.logspace_steps(2000, 20)
    traj = sim.run(2000, record=rec)
    assert np.array_equal(traj.steps, rec)
    np.testing.assert_allclose(traj.time, 2e-4 * rec)
    assert traj.alignment.shape == (len(rec), teacher.r)
    assert np.all(traj.orth_error < 1e-12)
    assert traj.risk[-1] == pytest.approx(sim.risk())
    np.testing.assert_allclose(traj.alignment[-1], sim.alignment())
    # recording does not perturb the run: the same bits for the sequential kernel; for the
    # blocked engine (block 16 here) record points inside a block end it early, which
    # regroups the sums: equal to rounding
    other = qf.StiefelSGD(teacher, 10, lr=2e-4, seed=0, block=block)
    other.run(2000)
    if sim.block == 1:
        assert np.array_equal(sim.W, other.W)
    else:
        assert sim.block == 16 and not np.all(rec % 16 == 0)
        np.testing.assert_allclose(sim.W, other.W, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cls", [qf.StiefelSGD, qf.EuclideanSGD])
def test_empty_record_steps_without_statistics(cls):
    """record=[] advances the same steps, to the same bits, and records nothing."""
    teacher = qf.Teacher.power_law(200, 0.5, 1.0)
    sims = [cls(teacher, 12, lr=2e-4, seed=3) for _ in range(2)]
    traj = sims[0].run(700, record=[])
    sims[1].run(700)
    assert sims[0].steps_done == 700 and np.array_equal(sims[0].W, sims[1].W)
    assert len(traj) == 0 and traj.alignment.shape == (0, teacher.r) and traj.risk.shape == (0,)
    assert sims[0].last_trajectory is traj


@pytest.mark.parametrize("cls", [qf.StiefelSGD, qf.EuclideanSGD])
def test_run_goes_past_the_last_record_point(cls):
    """run(steps, record) runs all the steps when the last record point is earlier, to the
    bits of a run without records (record points on multiples of split_period)."""
    teacher = qf.Teacher.power_law(200, 0.5, 1.0)
    sims = [cls(teacher, 12, lr=2e-4, seed=3, block=4) for _ in range(2)]
    p = sims[0].split_period
    assert p == (192 if cls is qf.StiefelSGD else 4)
    traj = sims[0].run(700, record=[0, p])
    sims[1].run(700)
    assert sims[0].steps_done == 700 and np.array_equal(traj.steps, [0, p])
    assert np.array_equal(sims[0].W, sims[1].W)


def _flow_vs_sgd(lr_d, seeds, d=200, N=4, t_max=3.0):
    """Per-record mean and standard error over seeds of R_sgd(t) - R_flow(t), where the
    flow (quadfast.riccati's exact closed form) starts from each run's own W0."""
    teacher = qf.Teacher(qf.power_law_coef(N, 1.0), d=d)
    lr = lr_d / d
    steps = int(round(t_max / lr))
    rec = np.linspace(0, steps, 13).astype(np.int64)
    diffs = []
    for s in range(seeds):
        sim = qf.StiefelSGD(teacher, N, lr=lr, seed=1000 + s)
        coef, start = qf.riccati.start_from_simulator(sim)
        flow = qf.riccati.risk_curve(coef, lr * rec, factor=start)
        diffs.append(sim.run(steps, record=rec).risk - flow)
    diffs = np.array(diffs)
    return diffs.mean(0), diffs.std(0, ddof=1) / np.sqrt(seeds)


@pytest.mark.slow
def test_sgd_risk_follows_population_flow_at_small_step():
    """SGD converges to the population flow as delta = lr*d -> 0 (MODEL.md §4), checked at
    d = 200, N = r = 4, alpha = 1 over t in [0, 3] (all four features learnt), 16 seeds:

    * the bias m(delta) = mean(R_sgd - R_flow) is O(delta): |m(delta)| <= 15 delta + 4 SE
      (measured: ~10 delta at delta = 0.005, 0.0025, 0.00125);
    * Richardson: 2 m(delta/2) - m(delta), the delta -> 0 limit, is within
      4 SE + 0.004 of zero at every record time.
    """
    m1, se1 = _flow_vs_sgd(0.004, seeds=16)
    m2, se2 = _flow_vs_sgd(0.002, seeds=16)
    assert np.all(np.abs(m1) <= 15 * 0.004 + 4 * se1), (m1, se1)
    assert np.all(np.abs(m2) <= 15 * 0.002 + 4 * se2), (m2, se2)
    limit, se_limit = 2 * m2 - m1, np.sqrt(4 * se2**2 + se1**2)
    assert np.all(np.abs(limit) <= 4 * se_limit + 0.004), (limit, se_limit)


@pytest.mark.slow
def test_flow_comparison_detects_large_step_bias():
    """Control for the test above: at lr*d = 0.2 the noise terms of MODEL.md §4 hold SGD
    away from the flow, and the same O(delta) bound rejects it."""
    mean, se = _flow_vs_sgd(0.2, seeds=8)
    assert np.any(np.abs(mean) > 15 * 0.004 + 4 * se)


def test_nonfinite_step_stops_with_step_number_and_keeps_last_weights():
    teacher = qf.Teacher.power_law(40, 0.5, 1.0)
    for batch in (1, 2):
        X, y = teacher.sample(10 * batch, seed=0)
        y[6 * batch] = 1e300  # e^2 overflows at step 7
        for block in (None, 1, 6):
            sim = qf.StiefelSGD(teacher, 4, lr=1e-3, seed=1, batch=batch, block=block)
            good = qf.StiefelSGD(teacher, 4, lr=1e-3, seed=1, batch=batch, block=block)
            good.step(X[: 6 * batch], y[: 6 * batch])
            with pytest.raises(qf.DivergenceError, match="step 7") as info:
                sim.step(X, y)
            assert info.value.step == 7
            assert sim.steps_done == 6
            if block is None:
                # the default block (16 columns: 16 steps at batch 1, 8 at batch 2) is cut
                # after 6 of its steps: the same weights as a 6-step block, to rounding
                assert sim.block == 16 // batch
                np.testing.assert_allclose(sim.W, good.W, rtol=0, atol=1e-15)
            else:  # the sequential kernel, and a block that holds the 6 good steps exactly
                assert np.array_equal(sim.W, good.W), (batch, block)


def test_reference_flow_agrees_with_riccati_closed_form_at_moderate_times():
    """reference.population_risk (direct eigh evaluation) loses ~eps exp(8 lambda_1 t);
    at t <= 2 here (exp(8 lambda_1 t) < 3e5) it agrees with the exact closed form to 1e-9."""
    teacher = qf.Teacher(qf.power_law_coef(6, 1.0), d=100)
    sim = qf.StiefelSGD(teacher, 6, lr=1e-4, seed=2)
    coef, start = qf.riccati.start_from_simulator(sim)
    times = np.linspace(0, 2, 9)
    np.testing.assert_allclose(ref.population_risk(coef, teacher.project(sim.W), times),
                               qf.riccati.risk_curve(coef, times, factor=start), rtol=0, atol=1e-9)
