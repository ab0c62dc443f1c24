"""The Euclidean (2-homogeneous) student: kernel against the NumPy reference, blocked
against sequential, divergence, bad input, the risk formula, and emergence statistics.

Tolerances: exact-trajectory comparisons use lr*d <= 0.02 and a few hundred steps from a
start of scale 0.5, where two correct float64 implementations agree to ~1e-15 (the
trajectories are not yet chaotic); float32 against the float64 reference: 1e-5 absolute
on weights of size ~0.2.
"""
import pickle

import numpy as np
import pytest

import quadfast as qf
from quadfast import euclid as eu
from quadfast import reference as ref


def explicit_teacher(base: qf.Teacher, seed: int = 11) -> qf.Teacher:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((base.d, base.r)))
    return qf.Teacher(base.coef, directions=q, noise=base.noise)


def make(teacher, **kw):
    args = dict(width=6, lr=0.02 / teacher.d, seed=7, init_scale=0.5)
    args.update(kw)
    return qf.EuclideanSGD(teacher, **args)


def test_step_formula_is_the_gradient_step():
    """The kernel's closed form W+ = (1 + 2 lr e) W - 2 lr e x z^T equals a step along the
    gradient of e^2/2 taken term by term from f = sum_i ||w_i||^2 He2(<w_i, x>/||w_i||), and
    that gradient equals a central finite difference of the loss (rel. 1e-6)."""
    teacher = qf.Teacher.power_law(30, 0.5, 1.0, noise=0.1)
    sim = make(teacher, width=4, lr=0.3, block=1)
    W0 = sim.W.copy()
    X, y = teacher.sample(1, seed=3)
    sim.step(X, y)
    x, z = X[0], W0.T @ X[0]
    e = z @ z - np.sum(W0**2) - y[0]
    np.testing.assert_allclose(sim.W, (1 + 0.6 * e) * W0 - 0.6 * e * np.outer(x, z), rtol=0, atol=1e-14)
    G = ref.euclid_gradient(W0, X, y)
    h, Dn = 1e-6, np.zeros_like(W0)
    for idx in np.ndindex(W0.shape):
        Wp, Wm = W0.copy(), W0.copy()
        Wp[idx] += h
        Wm[idx] -= h
        Dn[idx] = ((ref.euclid_output(Wp, X) - y) ** 2 - (ref.euclid_output(Wm, X) - y) ** 2)[0] / (4 * h)
    np.testing.assert_allclose(G, Dn, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("batch,block", [(1, 1), (1, 16), (4, 1)])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_kernel_equals_reference_on_same_samples(batch, block, frame):
    teacher = qf.Teacher.power_law(96, 0.4, 1.0, noise=0.05)
    if frame == "explicit":
        teacher = explicit_teacher(teacher)
    sim = make(teacher, batch=batch, block=block)
    W0 = sim.W.copy()
    X, y = teacher.sample(200 * batch, seed=7)
    sim.step(X, y)
    np.testing.assert_allclose(sim.W, ref.euclid_sgd(W0, X, y, sim.lr, batch), rtol=0, atol=1e-12)
    assert sim.steps_done == 200


@pytest.mark.parametrize("batch,block", [(1, 1), (1, 8), (3, 1)])
def test_in_kernel_samples_and_labels_equal_teacher_sample(batch, block):
    """run() draws Teacher.sample(seed)'s samples and labels them as the teacher does
    (explicit frame, noise from the sample stream)."""
    teacher = explicit_teacher(qf.Teacher.power_law(80, 0.4, 1.2, noise=0.3))
    sim = make(teacher, width=5, lr=0.01 / 80, seed=3, batch=batch, block=block)
    W0 = sim.W.copy()
    sim.run(120)
    X, y = teacher.sample(120 * batch, seed=3)
    np.testing.assert_allclose(sim.W, ref.euclid_sgd(W0, X, y, sim.lr, batch), rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch,block", [(1, 1), (1, 16), (3, 1)])
def test_float32_agrees_with_float64_reference(batch, block):
    teacher = qf.Teacher.power_law(96, 0.4, 1.0)
    sim = make(teacher, batch=batch, block=block, dtype=np.float32)
    assert sim.W.dtype == np.float32
    W0 = sim.W.astype(np.float64)
    X, y = teacher.sample(200 * batch, seed=2, dtype=np.float32)
    sim.step(X, y)
    W_ref = ref.euclid_sgd(W0, X.astype(np.float64), y.astype(np.float64), sim.lr, batch)
    np.testing.assert_allclose(sim.W, W_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("block", [2, 7, 32, 100])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_blocked_equals_sequential(block, frame):
    teacher = qf.Teacher.power_law(160, 0.5, 1.0, noise=0.2)
    if frame == "explicit":
        teacher = explicit_teacher(teacher)
    kw = dict(width=12, lr=0.02 / 160, seed=4, init_scale=0.5)
    seq = qf.EuclideanSGD(teacher, block=1, **kw)
    blk = qf.EuclideanSGD(teacher, block=block, **kw)
    seq.run(600)
    blk.run(600)
    assert seq.steps_done == blk.steps_done == 600
    np.testing.assert_allclose(blk.W, seq.W, rtol=0, atol=1e-12)


@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_width_one_default_block_equals_sequential(frame):
    """Width 1 has its own column operations in the blocked pass, and its own default block
    (8 columns): against the sequential kernel to 1e-12 on the same samples, over several
    row slabs (d = 3000) and on 1 and 2 threads (bit-identical), and W moves."""
    d = 3000
    teacher = qf.Teacher.power_law(d, 0.3, 1.0, noise=0.1)
    if frame == "explicit":
        teacher = explicit_teacher(teacher)
    kw = dict(width=1, lr=0.5 / d, seed=2, init_scale=0.5)
    seq = qf.EuclideanSGD(teacher, block=1, **kw)
    W0 = seq.W.copy()
    sims = [qf.EuclideanSGD(teacher, threads=t, **kw) for t in (1, 2)]
    assert sims[0].block == 8
    for sim in [seq] + sims:
        sim.run(403)
    np.testing.assert_allclose(sims[0].W, seq.W, rtol=0, atol=1e-12)
    assert np.array_equal(sims[0].W, sims[1].W)
    assert np.max(np.abs(seq.W - W0)) > 1e-2


@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_blocked_equals_sequential_over_many_slabs(frame):
    """At d = 1500, block 16 the rows split into 6 slabs (slabs.hpp); with 2 threads, the
    next block drawn inside the pass and an explicit frame's labels from the pass's
    Theta^T X, the blocked trajectory still equals the sequential one to rounding."""
    teacher = qf.Teacher.power_law(1500, 0.5, 1.0, noise=0.2)
    if frame == "explicit":
        teacher = explicit_teacher(teacher)
    kw = dict(width=12, lr=0.02 / 1500, seed=4, init_scale=0.5)
    seq = qf.EuclideanSGD(teacher, block=1, **kw)
    blk = qf.EuclideanSGD(teacher, block=16, threads=2, **kw)
    seq.run(500)
    blk.run(500)
    np.testing.assert_allclose(blk.W, seq.W, rtol=0, atol=1e-12)
    assert blk.risk() == pytest.approx(seq.risk(), rel=1e-12)


@pytest.mark.parametrize("samples", ["drawn", "caller"])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_threads_give_bit_identical_results(samples, frame):
    """Slabs fixed by (d, width, block), partial sums added in slab order: 1, 2 and 3
    threads give the same bits for W and the risk, with samples drawn in the kernel or
    passed by the caller; a thread count changed mid-run (and pickled) changes nothing."""
    teacher = qf.Teacher.power_law(1500, 0.5, 1.0, noise=0.1)
    if frame == "explicit":
        teacher = explicit_teacher(teacher)
    kw = dict(width=24, lr=0.05 / 1500, seed=9, block=16, init_scale=0.5)
    X = teacher.sample(1000, seed=3)[0] if samples == "caller" else None

    def advance(sim, n, start=0):
        if X is None:
            sim.run(n)
        else:
            sim.step(X[start:start + n])

    runs = []
    for threads in (1, 2, 3):
        sim = qf.EuclideanSGD(teacher, threads=threads, **kw)
        assert sim.threads == threads
        advance(sim, 1000)
        runs.append(sim)
    for other in runs[1:]:
        assert np.array_equal(other.W, runs[0].W)
        assert other.risk() == runs[0].risk()
    sim = qf.EuclideanSGD(teacher, threads=1, **kw)
    advance(sim, 640)  # a block boundary
    sim.threads = 3
    sim = pickle.loads(pickle.dumps(sim))
    assert sim.threads == 3
    sim.threads = 2
    advance(sim, 360, 640)
    assert np.array_equal(sim.W, runs[0].W)
    with pytest.raises(ValueError, match="threads"):
        sim.threads = -1
    assert sim.threads == 2


def test_threads_default_follows_the_environment(monkeypatch):
    teacher = qf.Teacher.power_law(40, 0.5, 1.0)
    monkeypatch.setenv("QUADFAST_NUM_THREADS", "3")
    assert qf.EuclideanSGD(teacher, 4, lr=1e-3).threads == 3
    monkeypatch.delenv("QUADFAST_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert qf.EuclideanSGD(teacher, 4, lr=1e-3).threads == 2


@pytest.mark.parametrize("block", [1, 8])
def test_zero_factor_step(block):
    """A label that makes 1 + 2 lr e = 0 (to rounding) wipes W down to the rank-one term
    -2 lr e x z^T; the blocked engine carries that factor without division and agrees with
    the reference through and after that step."""
    teacher = qf.Teacher.power_law(40, 0.5, 1.0)
    lr = 0.001
    sim = make(teacher, width=5, lr=lr, block=block)
    W0 = sim.W.copy()
    X, y = teacher.sample(9, seed=5)
    W5 = ref.euclid_sgd(W0, X[:5], y[:5], lr)
    z = W5.T @ X[5]
    y[5] = z @ z - np.sum(W5 * W5) + 1.0 / (2 * lr)  # e = -1 / (2 lr)
    sim.step(X, y)
    W_ref = ref.euclid_sgd(W0, X, y, lr)
    W6 = ref.euclid_sgd(W0, X[:6], y[:6], lr)
    assert np.linalg.matrix_rank(W6, tol=1e-9 * np.abs(W6).max()) == 1
    np.testing.assert_allclose(sim.W, W_ref, rtol=0, atol=1e-11 * np.abs(W_ref).max())


def test_bit_identical_across_block_aligned_chunks_and_pickles():
    teacher = qf.Teacher.power_law(128, 0.5, 1.0, noise=0.1)
    for block in (1, 16):
        kw = dict(width=8, lr=0.02 / 128, seed=42, block=block, init_scale=0.3)
        a = qf.EuclideanSGD(teacher, **kw)
        a.run(3200, record=[0, 160, 1600, 3200])
        b = qf.EuclideanSGD(teacher, **kw)
        b.run(3200, chunk_seconds=1e-6)
        assert np.array_equal(a.W, b.W)
        c = qf.EuclideanSGD(teacher, **kw)
        c.run(1234)
        d = pickle.loads(pickle.dumps(c))
        assert d.steps_done == 1234 and d.W is not c.W
        c.run(1000)
        d.run(1000)
        assert np.array_equal(c.W, d.W)


@pytest.mark.parametrize("block", [1, 8])
def test_divergence_names_the_step_and_keeps_last_weights(block):
    teacher = qf.Teacher.power_law(24, 0.45, 1.0)
    X, y = teacher.sample(40, seed=0)
    y[22] = 1e300
    s1 = make(teacher, width=4, lr=1e-3, seed=1, block=block)
    s2 = make(teacher, width=4, lr=1e-3, seed=1, block=block)
    s2.step(X[:22], y[:22])
    with pytest.raises(qf.DivergenceError, match="step 23") as info:
        s1.step(X, y)
    assert info.value.step == 23 and s1.steps_done == 22
    np.testing.assert_allclose(s1.W, s2.W, rtol=0, atol=1e-13)


@pytest.mark.parametrize("block", [1, 16])
def test_unstable_step_size_diverges_with_finite_weights(block):
    """At lr*d = 5 the unconstrained step blows up; the run stops before the step that
    would overflow and W holds finite weights (the last ones)."""
    teacher = qf.Teacher.power_law(64, 0.5, 1.0)
    sim = make(teacher, width=4, lr=5.0 / 64, seed=0, init_scale=1.0, block=block)
    with pytest.raises(qf.DivergenceError) as info:
        sim.run(100_000)
    assert info.value.step == sim.steps_done + 1 < 100_000
    assert np.isfinite(sim.W).all() and sim.norm2() <= 1e280


def test_risk_and_alignment_against_dense_formulas():
    base = qf.Teacher.power_law(30, 0.5, 1.0)
    for teacher in (base, explicit_teacher(base)):
        theta, lam = teacher.theta(), teacher.coef
        for W in (np.random.default_rng(1).standard_normal((30, 7)) * 0.3, np.zeros((30, 7))):
            sim = qf.EuclideanSGD(teacher, 7, lr=1e-3, W0=W)
            np.testing.assert_allclose(sim.risk(), ref.euclid_risk_dense(W, theta, lam), rtol=1e-12, atol=1e-14)
            G = theta.T @ W @ W.T @ theta
            np.testing.assert_allclose(sim.overlap(), G, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(sim.alignment(), np.diag(G) / lam, rtol=1e-12, atol=1e-15)
        assert qf.EuclideanSGD(teacher, 7, lr=1e-3, W0=np.zeros((30, 7))).risk() == pytest.approx(1.0, abs=1e-15)
        # the target W W^T = M*: risk 0, every alignment 1 (any rotation W O of it too)
        Wstar = np.hstack([theta * np.sqrt(lam), np.zeros((30, 7 - teacher.r))]) @ np.linalg.qr(
            np.random.default_rng(2).standard_normal((7, 7)))[0]
        sim = qf.EuclideanSGD(teacher, 7, lr=1e-3, W0=Wstar)
        assert abs(sim.risk()) < 1e-14
        np.testing.assert_allclose(sim.alignment(), 1.0, atol=1e-13)
    traj = qf.EuclideanSGD(base, 7, lr=1e-3, seed=1).run(10, record=[0, 10])
    assert np.isnan(traj.orth_error).all() and traj.alignment.shape == (2, base.r)


def test_population_flow_is_the_mean_step():
    """At lr -> 0 and d fixed, SGD tracks the flow: d = 64 at lr*d = 1e-4 over t = 2
    from a start of scale 0.5: alignments within 0.01."""
    teacher = qf.Teacher.power_law(64, 0.5, 1.0)
    sim = qf.EuclideanSGD(teacher, 6, lr=1e-4 / 64, seed=2, init_scale=0.5)
    fl = eu.population_flow(teacher, sim.W, [0.0, 1.0, 2.0])
    traj = sim.run(int(2.0 / sim.lr), record=[0, int(1.0 / sim.lr), int(2.0 / sim.lr)])
    np.testing.assert_allclose(traj.alignment, fl["alignment"], atol=1e-2)
    np.testing.assert_allclose(traj.risk, fl["risk"], atol=1e-2)


def test_emergence_order_and_scaling():
    """Features emerge one after another (plateau, then sharp rise), at times ~ 1/lambda_j.
    d = 128, r = 4, N = 8, lr*d = 0.005, start scale 0.01, 4 seeds.  Checked: in every seed
    the order is 1, 2, 3, 4; each emergence is sharp: A_j goes from 0.1 to 0.9 in the
    logistic time log(81) / (8 lambda_j) (within 25%), about 0.4 t_j here; the mean of lambda_j t_j is within 15% of the leading-order prediction
    log(d lambda_j / ((N - j + 1) s^2) - 1) / 8 (eu.predicted_emergence), and the seeds'
    times are within 10% of the population flow from the same start."""
    d, r, N, lrd, s0 = 128, 4, 8, 0.005, 0.01
    teacher = qf.Teacher(qf.power_law_coef(r, 1.0), d=d)
    lam = teacher.coef
    pred = eu.predicted_emergence(lam, d, N, s0)
    lr = lrd / d
    steps = int(1.6 * pred[-1] / lr)
    rec = np.unique(np.linspace(0, steps, 800).astype(np.int64))
    meas, flow = [], []
    for seed in range(4):
        sim = qf.EuclideanSGD(teacher, N, lr=lr, seed=seed, init_scale=s0)
        fl = eu.population_flow(teacher, sim.W, lr * rec)
        tr = sim.run(steps, record=rec)
        te = eu.emergence_times(tr.time, tr.alignment)
        assert np.all(np.diff(te) > 0), te
        width = eu.emergence_times(tr.time, tr.alignment, 0.9) - eu.emergence_times(tr.time, tr.alignment, 0.1)
        np.testing.assert_allclose(width, np.log(81.0) / (8.0 * lam), rtol=0.25)
        meas.append(te)
        flow.append(eu.emergence_times(fl["time"], fl["alignment"]))
    meas, flow = np.array(meas), np.array(flow)
    np.testing.assert_allclose(meas, flow, rtol=0.10)
    np.testing.assert_allclose((lam * meas).mean(0), lam * pred, rtol=0.15)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(width=0), ValueError, "width"),
        (dict(width=2.5), TypeError, "width"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(lr="fast"), TypeError, "lr"),
        (dict(batch=0), ValueError, "batch"),
        (dict(batch=1.5), TypeError, "batch"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=2**64), ValueError, "seed"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(dtype="complex128"), TypeError, "dtype"),
        (dict(W0=np.ones((20, 2))), ValueError, "W0"),
        (dict(W0=np.full((20, 3), np.nan)), ValueError, "W0"),
        (dict(W0=np.ones((20, 3), dtype=np.complex128)), TypeError, "W0"),
        (dict(init_scale=0.0), ValueError, "init_scale"),
        (dict(init_scale=-1.0), ValueError, "init_scale"),
        (dict(init_scale=0.1, W0=np.ones((20, 3))), ValueError, "init_scale"),
        (dict(block=0), ValueError, "block"),
        (dict(block=8, batch=2), ValueError, "block"),
        (dict(threads=0), ValueError, "threads"),
        (dict(threads=1.5), TypeError, "threads"),
    ],
)
def test_constructor_rejects(kwargs, exc, name):
    teacher = qf.Teacher.power_law(20, 0.5, 1.0)
    args = dict(width=3, lr=1e-3)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        qf.EuclideanSGD(teacher, **args)
    with pytest.raises(TypeError, match="teacher"):
        qf.EuclideanSGD("teacher", 3, lr=1e-3)


def test_step_and_run_reject_bad_input_and_lose_nothing():
    teacher = qf.Teacher.power_law(20, 0.5, 1.0)
    sim = qf.EuclideanSGD(teacher, 3, lr=1e-3, batch=2, seed=1)
    W = sim.W.copy()
    X, y = teacher.sample(4, seed=1)
    for args, exc, name in [((X[:3],), ValueError, "X"), ((X[:, :5],), ValueError, "X"),
                            ((X.astype(complex),), TypeError, "X"), ((X, y[:3]), ValueError, "y"),
                            ((X, np.full(4, np.inf)), ValueError, "y")]:
        with pytest.raises(exc, match=name):
            sim.step(*args)
    for kwargs, exc, name in [(dict(steps=-1), ValueError, "steps"), (dict(steps=1.5), TypeError, "steps"),
                              (dict(steps=5, record=[0, 6]), ValueError, "record"),
                              (dict(steps=5, record=[3, 2]), ValueError, "record")]:
        with pytest.raises(exc, match=name):
            sim.run(**kwargs)
    assert sim.steps_done == 0 and np.array_equal(sim.W, W)
    sim.W = np.zeros((20, 4))
    with pytest.raises(ValueError, match="W"):
        sim.run(1)
    with pytest.raises(TypeError, match="teacher"):
        eu.population_flow("t", W, [1.0])
    with pytest.raises(ValueError, match="times"):
        eu.population_flow(teacher, W, [2.0, 1.0])
