"""Single-stage online SGD of the 2-homogeneous Euclidean student (MODEL.md §1, §3).

Student ``f(x; W) = sum_i ||w_i||^2 He2(<w_i, x> / ||w_i||) = ||W^T x||^2 - ||W||_F^2``
with W (d x N) unconstrained, loss ``e^2 / 2`` with ``e = f(x; W) - y``.  The gradient of
the loss is ``2 e (x z^T - W)`` with ``z = W^T x``, so one step with a batch of B samples
(rows of X, labels y) is

    W+ = a W - (2 lr / B) X^T diag(e) Z^T,   a = 1 + (2 lr / B) sum_b e_b,   Z = W^T X^T,

and for B = 1: ``W+ = (1 + 2 lr e) W - 2 lr e x z^T``.  Training starts from a small
random W and runs with no constraint and no re-initialisation (the single-stage procedure
of seed 002).  In expectation ``dW/dt = -4 (W W^T - M*) W`` (time t = lr * steps), so
``S = W W^T`` follows the Riccati flow ``dS/dt = 4 (M* S + S M* - 2 S^2)``, whose stable
fixed point is ``S = M*`` (MODEL.md §1: ``E[<x x^T - I, S> x x^T] = 2 S``).

For batch 1 the default engine is the blocked exact one of MODEL.md §3 written for this
student (``W_j = s_j W + X diag(c) Z^T`` within a block: see csrc/include/quadfast/euclid.hpp);
``block=1`` selects the sequential kernel, one streaming pass over W per step.  Both give
the same trajectory to rounding.
"""
from __future__ import annotations

import numpy as np

from . import _threads
from . import _validate as V
from .stiefel import _OnlineSGD
from .teacher import Teacher

__all__ = ["EuclideanSGD", "default_block", "small_init", "DEFAULT_INIT_SCALE", "population_flow", "emergence_times", "predicted_emergence"]

DEFAULT_INIT_SCALE = 1e-3


def default_block(d: int, width: int, batch: int, threads: int = 1, dtype=np.float64,
                  cache_bytes: int | None = None) -> int:
    """Steps per block of the Euclidean blocked engine (MODEL.md §3); the rule is
    ``quadfast::euclid_default_block`` in ``csrc/include/quadfast/blocking.hpp``.

    Returns 1 (the sequential kernel) for ``batch > 1`` (the blocked engine runs batch 1
    only); 8 columns at width 1 (1 for d < 64); from width 2 to 128 the block of
    :func:`quadfast.default_block` (1 only for tiny problems, ``d * width < 64``); above it
    128 columns below width 512 and 192 from there.
    The Euclidean step has no retraction and ``4 d N`` GEMM flops instead of ``6 d N``, so
    the O(d c) flops a block adds weigh less than for the Stiefel student, whose default is
    96 columns there.  Measured with ``benchmarks/block_sweep.py --student euclid`` on the
    2-core Ice Lake VM of the README, one thread, microseconds per step (minimum of 8
    interleaved rounds; bold: the rule's choice): (16384, 1024) 96 / 128 / 192 columns:
    1464 / 1493 / **1396** (further runs: 1528 / 1477 / **1466** with 64: 1728, and 1430 /
    1391 / **1427**: within 3% from 128 columns up); (16384, 256) 64 / 96 / 128 / 192: 453 / 424 / **426** / 431; (4096, 512) 64 /
    96 / 128 / 192: 197 / 183 / 183 / **183**.  (4096, 64): 83 us per step sequential (a
    streaming pass over a 2 MiB W per step) against 33 us blocked.  Small problems gain
    too (sequential against 4 / 8 / 16 columns): (256, 1): 2.6 against 2.5 / 1.9 / 1.8;
    (1024, 4): 17.0 against 13.4 / 6.0 / 5.2; (1024, 7): 22.4 against 13.0 / 8.7 / 7.6.
    On the 2-core Emerald Rapids VM of :func:`quadfast.default_block`'s docstring, 4 / 8 /
    16 columns: (16384, 1): 57.6 / **52.4** / 54.4; (1024, 1): 4.21 / **3.69** / 3.58;
    (16384, 4): 130 / 81.6 / **71.2**; (1024, 7) 7 / 8 / 16: 7.77 / 5.45 / **4.87** (the
    rule before this one took ``max(4, width)`` columns below width 32).
    From width 32 to 128 the choice depends on the last-level cache as in
    :func:`quadfast.default_block` (``dtype`` and ``cache_bytes`` as there): 16 or 24
    columns when W and a block of samples fit in half of it, else 32; on the AMD EPYC VM
    of that docstring, 16 / 24 / 32 / 48 columns gave (4096, 64) 17.8 / **14.6** / 15.0 /
    14.8 and (65536, 64) 371 / 335 / **336** / 320 us per step.  ``threads`` is accepted
    for symmetry with the simulator and does not change the choice.
    """
    from ._ext import core as _core

    d = V.positive_int(d, "d")
    width = V.positive_int(width, "width")
    batch = V.positive_int(batch, "batch")
    V.positive_int(threads, "threads")
    from .stiefel import _cache_args

    return int(_core.euclid_default_block(d, width, batch, *_cache_args(dtype, cache_bytes)))


def small_init(d: int, width: int, scale: float = DEFAULT_INIT_SCALE, seed: int = 0) -> np.ndarray:
    """Small Gaussian start: W0 = scale * G / sqrt(d), G a d x width standard Gaussian
    matrix (float64), so ``E ||w_i||^2 = scale^2`` and ``E ||W0^T theta||^2 = width scale^2 / d``
    for every unit vector theta.  G comes from NumPy's PCG64 seeded with
    SeedSequence((seed, 0x5EED)), independent of the sample stream (the same Gaussian matrix
    from which :func:`quadfast.haar_stiefel` takes its Q factor)."""
    d = V.positive_int(d, "d")
    width = V.positive_int(width, "width")
    scale = V.positive_float(scale, "init_scale")
    rng = np.random.default_rng(np.random.SeedSequence((V.seed_int(seed), 0x5EED)))
    return np.ascontiguousarray(rng.standard_normal((d, width)) * (scale / np.sqrt(d)))


class EuclideanSGD(_OnlineSGD):
    """Online SGD of the unconstrained 2-homogeneous student ``||W^T x||^2 - ||W||_F^2``.

    Parameters
    ----------
    teacher : Teacher
    width : int
        N, the number of student neurons (>= 1; may exceed d).
    lr : float
        Step size eta > 0 (time t = eta * steps).  The step is unconstrained: SGD noise grows
        like ``lr * d * E[e^2]``, so use ``lr * d`` well below the smallest ``lambda_j`` to be
        learnt (docs/readme_euclid.md).
    batch : int
        Samples per step B (the gradients are averaged).
    seed : int
        Fixes the start (when ``W0`` is None) and every sample: sample s of the run is stream
        s of quadfast's counter-based generator, exactly as for :class:`StiefelSGD`, so
        ``teacher.sample(n, seed)`` returns the samples ``run`` draws.
    W0 : array_like (d, width), optional
        Starting weights (any finite matrix); default :func:`small_init`.
    init_scale : float, optional
        Scale of the default start (column norms about ``init_scale``); default
        ``DEFAULT_INIT_SCALE`` = 1e-3.  Only with ``W0=None``.
    dtype : float64 or float32
        Precision of the weights, samples and kernel arithmetic (norms and errors are
        accumulated in float64).
    block : int, optional
        Steps per block of the blocked exact engine (batch 1 only); ``block=1`` selects the
        sequential one-pass kernel.  Default: :func:`quadfast.euclid.default_block` for
        these (d, width, batch, threads, dtype) and this machine's last-level cache,
        chosen at construction.
    threads : int, optional
        Threads of the blocked engine (sampling and the passes over W).  Default: the
        environment (``QUADFAST_NUM_THREADS``, then ``OMP_NUM_THREADS``), else the CPUs
        available.  Results are bit-identical for every thread count: rows are split into
        slabs fixed by (d, width, block) alone, whose partial sums (``W^T X``, ``X^T X``,
        ``Theta^T X`` and ``||W||_F^2``) are added in a fixed order.  The sequential kernels
        (``block=1``, or batch > 1) use one thread.  Settable later (``sim.threads = 2``).

    Attributes
    ----------
    W : numpy.ndarray (d, width)
        The weights, owned by Python; the kernel updates this very array in place.
    steps_done : int

    Notes
    -----
    Observables (MODEL.md §1), with ``U = Theta^T W`` (r x N) and ``G = U U^T``:

    * risk ``R = ||W W^T - M*||_F^2 / ||M*||_F^2`` exactly (the population excess risk
      ``E[(f - f*)^2] / E[f*^2]``; 1 at W = 0, 0 at ``W W^T = M*``), computed without
      d x d matrices as ``(||W^T W||_F^2 - 2 ||Lambda^{1/2} U||_F^2 + ||lambda||^2) / ||lambda||^2``
      in O(d N^2);
    * alignment ``A_j = G_jj / lambda_j = ||W^T theta_j||^2 / lambda_j``: the share of
      feature j's target energy that the student carries (0 at a small start, 1 when
      learnt; NaN where lambda_j = 0).  The student is invariant under ``W -> W O`` (O
      orthogonal), so single neurons need not align with single features; this
      rotation-invariant measure is the one that shows emergence (docs/readme_euclid.md).

    A step that would produce non-finite values, or make ``||W||_F^2`` exceed 1e280 (1e60
    in float32), raises :class:`DivergenceError` naming the step; ``W`` then holds the
    weights after the previous step (:class:`quadfast.DivergenceError`, as for StiefelSGD).
    """

    _divergence_hint = "a non-finite or overflowing value (||W||_F^2 beyond 1e280, or 1e60 in float32)"

    def __init__(self, teacher: Teacher, width: int, lr: float, batch: int = 1, seed: int = 0, W0=None,
                 init_scale: float | None = None, dtype=np.float64, block: int | None = None,
                 threads: int | None = None):
        if not isinstance(teacher, Teacher):
            raise TypeError(f"teacher: expected a quadfast.Teacher, got {type(teacher).__name__}")
        self.teacher = teacher
        d = teacher.d
        self.width = V.positive_int(width, "width")
        self.lr = V.positive_float(lr, "lr")
        self.batch = V.positive_int(batch, "batch")
        self.seed = V.seed_int(seed)
        self.dtype = V.as_dtype(dtype)
        self._threads = _threads.resolve(threads)
        if block is None:
            block = default_block(d, self.width, self.batch, self._threads, self.dtype)
        self.block = V.positive_int(block, "block")
        if self.block > 1 and self.batch != 1:
            raise ValueError(f"block: the blocked engine runs batch 1 only; use block=1 with batch={self.batch}")
        if W0 is None:
            self.init_scale = DEFAULT_INIT_SCALE if init_scale is None else V.positive_float(init_scale, "init_scale")
            W = small_init(d, self.width, self.init_scale, self.seed).astype(self.dtype)
        else:
            if init_scale is not None:
                raise ValueError("init_scale: applies to the default start only; pass W0 or init_scale, not both")
            W = V.float_array(W0, "W0", 2, shape=(d, self.width), dtype=self.dtype)
            self.init_scale = None
        self.W = V.aligned_copy(W, self.dtype)  # owned by the simulator
        self._kernel = self._make_kernel()

    def _make_kernel(self):
        from ._ext import core as _core

        cls = _core.EuclidKernel64 if self.dtype == np.float64 else _core.EuclidKernel32
        t = self.teacher
        self._coef = np.ascontiguousarray(t.coef, dtype=self.dtype)
        self._dirs = None if t.directions is None else np.ascontiguousarray(t.directions, dtype=self.dtype)
        return cls(t.d, self.width, self.batch, self.lr, self._coef, self._dirs, t.noise, self.seed, self.block,
                   self._threads)

    # ----------------------------------------------------------------- observables
    @property
    def steps_done(self) -> int:
        return int(self._kernel.steps)

    def alignment(self) -> np.ndarray:
        """A_j = G_jj / lambda_j = ||W^T theta_j||^2 / lambda_j (length r; NaN where lambda_j = 0)."""
        return _alignment(self.projection(), self.teacher.coef)

    def norm2(self) -> float:
        """||W||_F^2 (float64 accumulation)."""
        W = np.asarray(self.W, dtype=np.float64)
        return float(np.einsum("ij,ij->", W, W))

    def risk(self) -> float:
        """R = ||W W^T - M*||_F^2 / ||M*||_F^2 (exact; O(d N^2), no d x d matrix)."""
        return _risk(self.W, self.projection(), self.teacher.coef)

    def _stats(self):
        U = self.projection()
        return (self.steps_done, _risk(self.W, U, self.teacher.coef), _alignment(U, self.teacher.coef), np.nan)

    # ----------------------------------------------------------------- checkpoints
    def __getstate__(self):
        return {"version": 1, "teacher": self.teacher, "width": self.width, "lr": self.lr, "batch": self.batch,
                "seed": self.seed, "dtype": self.dtype.str, "block": self.block, "threads": self._threads, "init_scale": self.init_scale,
                "W": self.W, "steps": self.steps_done}

    def __setstate__(self, st):
        if st.get("version") != 1:
            raise ValueError(f"checkpoint: unsupported EuclideanSGD state version {st.get('version')!r}")
        self.teacher = st["teacher"]
        self.width, self.lr, self.batch, self.seed = st["width"], st["lr"], st["batch"], st["seed"]
        self.dtype = np.dtype(st["dtype"])
        self.block, self.init_scale = st["block"], st["init_scale"]
        self._threads = st.get("threads", 1)
        self.W = V.aligned_copy(st["W"], self.dtype)
        self._kernel = self._make_kernel()
        self._kernel.steps = int(st["steps"])

    def __repr__(self) -> str:
        return (f"EuclideanSGD(d={self.teacher.d}, width={self.width}, r={self.teacher.r}, lr={self.lr:g}, "
                f"batch={self.batch}, block={self.block}, threads={self._threads}, dtype={self.dtype}, steps_done={self.steps_done})")


def _alignment(U: np.ndarray, coef: np.ndarray) -> np.ndarray:
    g = np.einsum("ij,ij->i", U, U)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(coef > 0, g / np.where(coef > 0, coef, 1.0), np.nan)


def _risk(W: np.ndarray, U: np.ndarray, coef: np.ndarray) -> float:
    """||W W^T - M*||_F^2 / ||M*||_F^2 = (||W^T W||^2 - 2 tr(U^T Lambda U) + ||lambda||^2) / ||lambda||^2."""
    W64 = np.asarray(W, dtype=np.float64)
    C = W64.T @ W64
    lam2 = float(np.sum(coef**2))
    cross = float(np.sum(coef[:, None] * U * U))
    return float((np.sum(C * C) - 2.0 * cross + lam2) / lam2)



def population_flow(teacher: Teacher, W0, times, rtol: float = 1e-9) -> dict:
    """The population (gradient-flow) limit of this SGD from the start ``W0``.

    In expectation a step moves W by ``-4 lr (W W^T - M*) W``; with ``U = Theta^T W`` (r x N)
    and ``Q = W^T W - U^T U`` (the Gram matrix of the part of W outside the teacher's span)
    the flow ``dW/dt = 4 (M* - W W^T) W`` closes on these small matrices:

        dU/dt = 4 Lambda U - 4 U C,   dQ/dt = -4 (Q C + C Q),   C = U^T U + Q = W^T W,

    which is integrated with ``scipy.integrate.solve_ivp`` (LSODA).  Time is t = lr * steps.

    Returns a dict with ``time``, ``alignment`` (A_j = G_jj / lambda_j, shape (len(times), r))
    and ``risk`` (``||W W^T - M*||_F^2 / ||M*||_F^2``).
    """
    from scipy.integrate import solve_ivp

    if not isinstance(teacher, Teacher):
        raise TypeError(f"teacher: expected a quadfast.Teacher, got {type(teacher).__name__}")
    W0 = V.float_array(W0, "W0", 2, shape=(teacher.d, None))
    times = V.float_array(times, "times", 1)
    if times.size == 0 or times.min() < 0 or np.any(np.diff(times) < 0):
        raise ValueError("times: expected a non-empty non-decreasing array of times >= 0")
    rtol = V.positive_float(rtol, "rtol")
    lam = teacher.coef
    r, N = teacher.r, W0.shape[1]
    U0 = teacher.project(W0)
    Q0 = W0.T @ W0 - U0.T @ U0

    def rhs(_t, y):
        U = y[: r * N].reshape(r, N)
        Q = y[r * N:].reshape(N, N)
        C = U.T @ U + Q
        dU = 4.0 * (lam[:, None] * U - U @ C)
        dQ = -4.0 * (Q @ C + C @ Q)
        return np.concatenate([dU.ravel(), dQ.ravel()])

    sol = solve_ivp(rhs, (0.0, float(times[-1])), np.concatenate([U0.ravel(), Q0.ravel()]), method="LSODA",
                    t_eval=times, rtol=rtol, atol=1e-14)
    if not sol.success:  # pragma: no cover - the flow is smooth and bounded
        raise RuntimeError(f"population_flow: the integrator failed: {sol.message}")
    Us = sol.y[: r * N].T.reshape(-1, r, N)
    Qs = sol.y[r * N:].T.reshape(-1, N, N)
    align = np.array([_alignment(U, lam) for U in Us])
    lam2 = float(np.sum(lam**2))
    risk = []
    for U, Q in zip(Us, Qs):
        C = U.T @ U + Q
        risk.append((np.sum(C * C) - 2.0 * np.sum(lam[:, None] * U * U) + lam2) / lam2)
    return {"time": sol.t, "alignment": align, "risk": np.array(risk)}


def emergence_times(time, alignment, level: float = 0.5) -> np.ndarray:
    """First time at which each A_j reaches ``level`` (linear interpolation between records;
    NaN if never).  ``alignment`` has shape (len(time), r)."""
    time = np.asarray(time, dtype=np.float64)
    A = np.asarray(alignment, dtype=np.float64)
    out = np.full(A.shape[1], np.nan)
    for j in range(A.shape[1]):
        hit = np.nonzero(A[:, j] >= level)[0]
        if hit.size == 0:
            continue
        k = hit[0]
        if k == 0:
            out[j] = time[0]
        else:
            a0, a1 = A[k - 1, j], A[k, j]
            out[j] = time[k - 1] + (level - a0) / (a1 - a0) * (time[k] - time[k - 1])
    return out


def predicted_emergence(coef, d: int, width: int, init_scale: float, level: float = 0.5) -> np.ndarray:
    """Leading-order emergence times of the features from a small start (docs/readme_euclid.md).

    Before feature j is learnt, its overlap ``A_j = ||W^T theta_j||^2 / lambda_j`` follows
    the logistic equation ``dA_j/dt = 8 lambda_j A_j (1 - A_j)`` of the population flow
    (the features already learnt are "deflated": the part of ``W^T theta_j`` along them
    decays, the rest grows like ``exp(4 lambda_j t)``).  From the small start
    ``A_j(0) = n_j init_scale^2 / (d lambda_j)``, where ``n_j = width - j + 1`` counts the
    directions of R^N not taken by the j - 1 features learnt before (its expectation for the
    Gaussian start), it reaches 1/2 at

        t_j = log(d lambda_j / (n_j init_scale^2) - 1) / (8 lambda_j),

    i.e. ``t_j ~ log(d / (N init_scale^2)) / (8 lambda_j)``: a plateau, then emergence at a
    time proportional to 1 / lambda_j (seed 002, MODEL.md §5).  For another ``level`` l in
    (0, 1) the same logistic reaches l at ``t_j - log(1/l - 1) / (8 lambda_j)``.
    """
    lam = V.float_array(coef, "coef", 1)
    d = V.positive_int(d, "d")
    width = V.positive_int(width, "width")
    s = V.positive_float(init_scale, "init_scale")
    level = V.positive_float(level, "level")
    if not level < 1.0:
        raise ValueError(f"level: expected a value in (0, 1), got {level}")
    n = np.maximum(width - np.arange(lam.size), 1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log(d * lam / (n * s * s) - 1.0) - np.log(1.0 / level - 1.0)) / (8.0 * lam)
