"""Bad input gets a ValueError/TypeError naming the parameter, and nothing is lost."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quadfast as qf

D = 20


@pytest.fixture
def teacher():
    return qf.Teacher.power_law(D, 0.5, 1.0)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(width=0), ValueError, "width"),
        (dict(width=D + 1), ValueError, "width"),
        (dict(width=2.5), TypeError, "width"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=-1e-3), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(lr="fast"), TypeError, "lr"),
        (dict(batch=0), ValueError, "batch"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(dtype=np.int32), TypeError, "dtype"),
        (dict(dtype=np.float16), TypeError, "dtype"),
        (dict(dtype="complex128"), TypeError, "dtype"),
        (dict(W0=np.ones((D, 3))), ValueError, "W0"),
        (dict(W0=np.eye(D)[:, :2]), ValueError, "W0"),
        (dict(W0=np.full((D, 3), np.nan)), ValueError, "W0"),
        (dict(W0=np.eye(D)[:, :3].astype(np.complex128)), TypeError, "W0"),
    ],
)
def test_constructor_rejects(teacher, kwargs, exc, name):
    args = dict(width=3, lr=1e-3)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        qf.StiefelSGD(teacher, **args)


def test_teacher_must_be_a_teacher():
    with pytest.raises(TypeError, match="teacher"):
        qf.StiefelSGD("teacher", 3, lr=1e-3)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(coef=[1.0, -0.5], d=5), ValueError, "coef"),
        (dict(coef=[1.0, np.inf], d=5), ValueError, "coef"),
        (dict(coef=[], d=5), ValueError, "coef"),
        (dict(coef=[1.0] * 6, d=5), ValueError, "coef"),
        (dict(coef=[1.0]), ValueError, "d"),
        (dict(coef=[1.0], d=5, noise=-1.0), ValueError, "noise"),
        (dict(coef=[1.0, 1.0], directions=np.ones((5, 2))), ValueError, "directions"),
        (dict(coef=[1.0, 1.0], directions=np.eye(5)[:, :3]), ValueError, "directions"),
    ],
)
def test_teacher_rejects(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        qf.Teacher(**kwargs)


def test_power_law_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        qf.Teacher.power_law(100, 1.0, 1.0)


def test_step_rejects_and_loses_nothing(teacher):
    sim = qf.StiefelSGD(teacher, 3, lr=1e-3, batch=2)
    sim.run(5)
    W = sim.W.copy()
    X, y = teacher.sample(4, seed=1)
    bad_cases = [
        (dict(X=X[:, :-1]), ValueError, "X"),
        (dict(X=X[:3]), ValueError, "X"),
        (dict(X=np.where(np.arange(D) == 3, np.nan, X)), ValueError, "X"),
        (dict(X=X, y=y[:3]), ValueError, "y"),
        (dict(X=X, y=np.array([1.0, np.inf, 0.0, 0.0])), ValueError, "y"),
        (dict(X=X.astype(np.complex128)), TypeError, "X"),
    ]
    for kw, exc, name in bad_cases:
        with pytest.raises(exc, match=name):
            sim.step(**kw)
    assert np.array_equal(sim.W, W) and sim.steps_done == 5


def test_run_rejects_bad_record(teacher):
    sim = qf.StiefelSGD(teacher, 3, lr=1e-3)
    for rec in ([5, 3], [0, 11], [1.5], [[]], [[1, 2]]):
        with pytest.raises(ValueError, match="record"):
            sim.run(10, record=rec)
    with pytest.raises(ValueError, match="steps"):
        sim.run(-1)
    assert sim.steps_done == 0


def test_replacing_W_with_wrong_array_is_caught(teacher):
    sim = qf.StiefelSGD(teacher, 3, lr=1e-3)
    sim.W = np.asfortranarray(sim.W)
    with pytest.raises(ValueError, match="W"):
        sim.run(3)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 7),
    cols=st.integers(1, 2 * D),
    batch=st.integers(1, 3),
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.complex64, np.bool_]),
)
def test_step_shapes_and_dtypes_property(rows, cols, batch, dtype):
    """Any (rows, cols, dtype) either runs rows/batch steps or raises a named error."""
    teacher = qf.Teacher.power_law(D, 0.5, 1.0)
    sim = qf.StiefelSGD(teacher, 3, lr=1e-3, batch=batch)
    X = np.ones((rows, cols), dtype=dtype)
    valid = cols == D and rows > 0 and rows % batch == 0 and np.dtype(dtype).kind in "fiu"
    if valid:
        sim.step(X)
        assert sim.steps_done == rows // batch
    else:
        with pytest.raises((ValueError, TypeError), match="X"):
            sim.step(X)
        assert sim.steps_done == 0
