"""The blocked exact engine (MODEL.md §3) against the sequential kernel and the reference."""
import pickle

import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref


def explicit(base, seed=5):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((base.d, base.r)))
    return qf.Teacher(base.coef, directions=q, noise=base.noise)


@pytest.mark.parametrize("block", [2, 7, 32, 100])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_blocked_equals_sequential(block, frame):
    """Same samples, same start: blocked and sequential trajectories agree to 1e-12."""
    teacher = qf.Teacher.power_law(160, 0.5, 1.0, noise=0.2)
    if frame == "explicit":
        teacher = explicit(teacher)
    kw = dict(width=12, lr=0.02 / 160, seed=4)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    blk = qf.StiefelSGD(teacher, block=block, **kw)
    seq.run(600)
    blk.run(600)
    np.testing.assert_allclose(blk.W, seq.W, rtol=0, atol=1e-12)


def test_blocked_on_caller_samples_equals_reference():
    teacher = qf.Teacher.power_law(96, 0.4, 1.0, noise=0.05)
    sim = qf.StiefelSGD(teacher, 6, lr=0.02 / 96, seed=7, block=16)
    W0 = sim.W.copy()
    X, y = teacher.sample(250, seed=7)
    sim.step(X, y)
    np.testing.assert_allclose(sim.W, ref.stiefel_sgd(W0, X, y, 0.02 / 96), rtol=0, atol=1e-10)


def test_blocked_float32():
    teacher = qf.Teacher.power_law(128, 0.5, 1.0)
    f64 = qf.StiefelSGD(teacher, 8, lr=0.02 / 128, seed=1, block=1)
    f32 = qf.StiefelSGD(teacher, 8, lr=0.02 / 128, seed=1, block=16, dtype=np.float32)
    f64.run(400)
    f32.run(400)
    np.testing.assert_allclose(f32.W, f64.W, rtol=0, atol=1e-4)


def test_blocked_is_bit_identical_across_block_aligned_chunks_and_pickles():
    teacher = qf.Teacher.power_law(128, 0.5, 1.0, noise=0.1)
    kw = dict(width=8, lr=0.05 / 128, seed=42, block=16)
    a = qf.StiefelSGD(teacher, **kw)
    a.run(3200, record=[0, 160, 1600, 3200])  # record points on block boundaries
    b = qf.StiefelSGD(teacher, **kw)
    b.run(3200, chunk_seconds=1e-6)  # many small progress chunks
    assert np.array_equal(a.W, b.W)
    # a pickle taken mid-block continues exactly as the original does
    c = qf.StiefelSGD(teacher, **kw)
    c.run(1234)
    d = pickle.loads(pickle.dumps(c))
    c.run(1000)
    d.run(1000)
    assert np.array_equal(c.W, d.W)


def test_blocked_drift_control_and_divergence():
    d, N = 24, 4
    teacher = qf.Teacher.power_law(d, 0.45, 1.0)
    sim = qf.StiefelSGD(teacher, N, lr=0.05 / d, seed=0, block=8)
    sim.run(1_000_000)
    assert sim.reortho_stats["count"] > 0 and sim.reortho_stats["max_drift"] < 1e-12
    X, y = teacher.sample(40, seed=0)
    y[22] = 1e300
    s1 = qf.StiefelSGD(teacher, N, lr=1e-3, seed=1, block=8)
    s2 = qf.StiefelSGD(teacher, N, lr=1e-3, seed=1, block=8)
    s2.step(X[:22], y[:22])
    with pytest.raises(qf.DivergenceError, match="step 23"):
        s1.step(X, y)
    # the weights after step 22, to rounding: the failing block had 8 sample columns and
    # the comparison's last block 6, so their GEMMs sum in a different order
    assert s1.steps_done == 22
    np.testing.assert_allclose(s1.W, s2.W, rtol=0, atol=1e-13)


def test_block_argument_validation():
    teacher = qf.Teacher.power_law(64, 0.5, 1.0)
    with pytest.raises(ValueError, match="block"):
        qf.StiefelSGD(teacher, 4, lr=1e-3, batch=2, block=8)
    with pytest.raises(ValueError, match="block"):
        qf.StiefelSGD(teacher, 4, lr=1e-3, block=0)
    assert qf.default_block(4096, 64, 1) == 32 and qf.default_block(4096, 64, 4) == 1
