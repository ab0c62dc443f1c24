"""Quadratically parameterised linear regression (MODEL.md §5, last bullet; seed 003).

Model and conventions (the exact forms quadfast implements)
-----------------------------------------------------------
* Data: ``x_i = sqrt(lambda_i) g_i`` with ``g_i ~ N(0, 1)`` independent, ``i = 1, 2, ...``,
  ``lambda_i = i^-alpha``.
* Target: ``y = sum_i theta*_i x_i + sigma xi`` with ``theta*_i = i^((alpha - beta)/2)``, so
  that the per-coordinate signal is ``lambda_i theta*_i^2 = i^-beta`` exactly.  This is the
  normalisation under which the seed's statements hold: the approximation error of a model
  of size M is ``sum_{i>M} i^-beta ~ M^(1-beta)/(beta-1)``, and the risk rates
  ``T^(-1+1/beta)`` (alpha <= beta) and ``T^(-(2 beta - 2)/(alpha + beta))`` (alpha > beta)
  follow; ``beta > 1`` is required (finite signal).  "alpha > beta" means the signal
  ``i^-beta`` decays slower than the data spectrum ``i^-alpha``.
* Model of size M: ``f(x) = <x_{1:M}, v (.) v>`` (quadratic) or ``<x_{1:M}, w>`` (linear
  baseline).  Coordinates beyond M are not modelled; their contribution to y,
  ``sum_{i>M} theta*_i x_i``, is Gaussian with variance ``tail = sum_{i>M} i^-beta =
  zeta(beta, M + 1)`` (Hurwitz zeta, scipy.special.zeta) and independent of x_{1:M}, so
  one deviate samples it exactly.  No truncation of the infinite sum is made: the tail is
  evaluated in closed form, to rounding.
* Loss ``e^2 / 2``, ``e = f(x) - y``; one SGD step at step size ``eta_t``:
  ``v <- v - eta_t 2 e x (.) v`` and ``w <- w - eta_lin_t e x``.
* Excess risk (exact, population): ``E[(f(x) - y)^2] - sigma^2 =
  sum_{i<=M} lambda_i (v_i^2 - theta*_i)^2 + zeta(beta, M + 1)`` (and ``w_i`` for ``v_i^2``).
* Schedule (seed 003: constant step, then geometric decay): ``eta_t = eta`` for the first
  ``phase1`` steps; the remaining ``T - phase1`` steps are split into ``stages`` equal
  stages and stage ``l = 1..stages`` uses ``eta 2^-l``.  The seed (a summary of the paper)
  gives no constants; quadfast's defaults are ``phase1 = T // 2`` and
  ``stages = max(1, floor(log2(T - phase1)))`` (stages of length ~ T2 / log2 T2, the usual
  step-decay schedule), ``v_0 = init * 1`` with ``init = 0.1`` (small, near zero, as the
  seed requires) and ``w_0 = 0``.
* Samples: step t (0-based) of replica r uses deviates 0..M+1 of stream ``(r << 40) + t``
  of quadfast's counter-based generator keyed by ``seed``: 0..M-1 are g, M is the tail
  deviate, M+1 the noise xi.  Quadratic and linear models see the same samples.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _threads
from . import _validate as V
from .stiefel import _record_points

__all__ = ["QPLR", "QPLRRun", "schedule", "predicted_exponents", "effective_dimension"]

_STEP_BITS = 40


def _stages_default(steps: int, phase1: int) -> int:
    t2 = steps - phase1
    return max(1, int(math.floor(math.log2(t2)))) if t2 >= 2 else 1


def schedule(steps: int, lr: float = 1.0, phase1: int | None = None, stages: int | None = None) -> np.ndarray:
    """Step sizes ``eta_t``, t = 0..steps-1, of the two-phase schedule (see module doc).

    ``eta_t = lr`` for ``t < phase1``, then ``lr * 2^-l(t)`` with
    ``l(t) = 1 + floor((t - phase1) * stages / (steps - phase1))``.
    """
    steps, phase1, stages = _check_schedule(steps, phase1, stages)
    lr = V.positive_float(lr, "lr")
    t = np.arange(steps, dtype=np.int64)
    l = np.where(t < phase1, 0, 1 + (t - phase1) * stages // max(steps - phase1, 1))
    return lr * np.ldexp(1.0, -l.astype(np.int32))


def _check_schedule(steps, phase1, stages):
    steps = V.positive_int(steps, "steps", maximum=(1 << _STEP_BITS) - 1)
    phase1 = steps // 2 if phase1 is None else V.positive_int(phase1, "phase1", minimum=0, maximum=steps)
    stages = _stages_default(steps, phase1) if stages is None else V.positive_int(stages, "stages", maximum=999)
    if phase1 < steps and stages > steps - phase1:
        raise ValueError(f"stages: expected at most steps - phase1 = {steps - phase1} stages, got {stages}")
    return steps, phase1, stages


def predicted_exponents(alpha: float, beta: float) -> dict:
    """Exponents of the seed-003 scaling laws (up to log factors), as quadfast checks them.

    Returns a dict with
    ``T_quadratic``: -(2 beta - 2)/(alpha + beta) if alpha > beta, else -1 + 1/beta
    (the excess risk ~ T^exponent when the model is large, M >= D);
    ``T_linear``: -(beta - 1)/alpha, the bias rate of linear SGD with the same schedule,
    valid when alpha > beta (where the bias dominates);
    ``M``: 1 - beta (risk ~ M^(1-beta) when M <= D, the approximation term);
    ``D``: 1 / max(beta, (alpha + beta)/2), the effective dimension D ~ T^exponent.
    """
    alpha, beta = _check_exponents(alpha, beta)
    tq = -(2 * beta - 2) / (alpha + beta) if alpha > beta else -1.0 + 1.0 / beta
    return {"T_quadratic": tq, "T_linear": -(beta - 1) / alpha, "M": 1.0 - beta,
            "D": 1.0 / max(beta, (alpha + beta) / 2)}


def effective_dimension(steps, alpha: float, beta: float, M=np.inf):
    """D = min(T^(1/max(beta, (alpha + beta)/2)), M) (seed 003), without log factors."""
    alpha, beta = _check_exponents(alpha, beta)
    return np.minimum(np.asarray(steps, dtype=np.float64) ** (1.0 / max(beta, (alpha + beta) / 2)), M)


def _check_exponents(alpha, beta):
    alpha = V.positive_float(alpha, "alpha")
    beta = V.real_float(beta, "beta")
    if not beta > 1.0:
        raise ValueError(f"beta: expected beta > 1 (the signal sum_i i^-beta must be finite), got {beta}")
    return alpha, beta


@dataclasses.dataclass
class QPLRRun:
    """Result of :meth:`QPLR.run`.

    steps : (K,) recorded step counts
    risk : (K, R) exact excess risk of the quadratic model per replica (NaN after divergence)
    risk_linear : (K, R) same for the linear baseline (None when ``linear=False``)
    v, w : (R, M) final weights (w None when ``linear=False``)
    diverged, diverged_linear : (R,) 1-based step at which the error turned non-finite, 0 if never
    lr, lr_linear, phase1, stages : the schedule used
    """

    steps: np.ndarray
    risk: np.ndarray
    risk_linear: np.ndarray | None
    v: np.ndarray
    w: np.ndarray | None
    diverged: np.ndarray
    diverged_linear: np.ndarray | None
    lr: float
    lr_linear: float
    phase1: int
    stages: int

    @property
    def mean_risk(self) -> np.ndarray:
        """Risk averaged over the replicas, per record."""
        return self.risk.mean(axis=1)

    @property
    def mean_risk_linear(self) -> np.ndarray | None:
        return None if self.risk_linear is None else self.risk_linear.mean(axis=1)


class QPLR:
    """Quadratically parameterised linear regression with power-law spectra (seed 003).

    Parameters
    ----------
    M : int
        Model size (coordinates modelled).
    alpha : float
        Data spectrum ``lambda_i = i^-alpha`` (alpha > 0).
    beta : float
        Signal decay: ``lambda_i theta*_i^2 = i^-beta`` (beta > 1), i.e.
        ``theta*_i = i^((alpha - beta)/2)``.
    noise : float
        Label noise sigma >= 0.

    Attributes
    ----------
    lam, theta : (M,) arrays of lambda_i and theta*_i.
    tail : float
        ``sum_{i>M} lambda_i theta*_i^2 = zeta(beta, M + 1)``, the risk of any model of size M
        from the unmodelled coordinates (exact, no truncation).

    Examples
    --------
    >>> import quadfast as qf
    >>> prob = qf.QPLR(M=256, alpha=3.0, beta=2.0, noise=0.1)
    >>> out = prob.run(10_000, replicas=16, record=qf.logspace_steps(10_000, 20), seed=1)
    >>> out.mean_risk[-1], out.mean_risk_linear[-1]          # doctest: +SKIP
    """

    def __init__(self, M: int, alpha: float, beta: float, noise: float = 0.0):
        from scipy.special import zeta

        self.M = V.positive_int(M, "M", maximum=1 << 30)
        self.alpha, self.beta = _check_exponents(alpha, beta)
        self.noise = V.positive_float(noise, "noise", allow_zero=True)
        i = np.arange(1, self.M + 1, dtype=np.float64)
        self.lam = i ** (-self.alpha)
        self.theta = i ** ((self.alpha - self.beta) / 2)
        self.tail = float(zeta(self.beta, self.M + 1))

    # ----------------------------------------------------------------- risks
    def risk(self, v) -> np.ndarray:
        """Exact excess risk of ``f = <x, v (.) v>``: sum_i lambda_i (v_i^2 - theta*_i)^2 + tail.
        ``v`` has shape (..., M); returns shape (...)."""
        v = V.float_array(v, "v", np.ndim(v), shape=(None,) * (np.ndim(v) - 1) + (self.M,))
        return ((v * v - self.theta) ** 2) @ self.lam + self.tail

    def risk_linear(self, w) -> np.ndarray:
        """Exact excess risk of ``f = <x, w>``: sum_i lambda_i (w_i - theta*_i)^2 + tail."""
        w = V.float_array(w, "w", np.ndim(w), shape=(None,) * (np.ndim(w) - 1) + (self.M,))
        return ((w - self.theta) ** 2) @ self.lam + self.tail

    # ----------------------------------------------------------------- step sizes
    def default_lr(self) -> float:
        """eta = 1 / (16 sum_{i<=M} lambda_i theta*_i): an eighth of 1/tr of the Hessian
        4 diag(theta) Lambda at the optimum of the quadratic model.  SGD with Gaussian data
        is stable below about 1/tr near the optimum; the multiplicative updates
        v_i (1 - 2 eta e x_i) far from it need the extra margin (measured: at alpha = 5,
        beta = 2, M = 256, twice this step size diverged in 2 of 8 replicas within 2^14
        steps, this one in none of 8 over 2^17)."""
        return float(1.0 / (16.0 * np.sum(self.lam * self.theta)))

    def default_lr_linear(self) -> float:
        """eta_lin = 1 / (2 sum_{i<=M} lambda_i): half of 1/tr of the linear model's Hessian."""
        return float(1.0 / (2.0 * np.sum(self.lam)))

    # ----------------------------------------------------------------- SGD
    def run(self, steps: int, replicas: int = 1, *, lr: float | None = None, lr_linear: float | None = None,
            init: float = 0.1, phase1: int | None = None, stages: int | None = None, record=None, seed: int = 0,
            linear: bool = True, threads: int | None = None, v0=None, replica0: int = 0) -> QPLRRun:
        """Run ``replicas`` independent SGD runs of ``steps`` steps with the two-phase schedule.

        Parameters
        ----------
        steps : int
            T, the number of samples (one per step) of each run.
        replicas : int
            R independent runs; replica r uses its own streams (module doc), so replica r's
            result does not depend on R.
        lr, lr_linear : float, optional
            Base step sizes eta of the quadratic and linear models (defaults
            :meth:`default_lr`, :meth:`default_lr_linear`).
        init : float
            v_0 = init * 1 (ignored when ``v0`` is given); w_0 = 0.
        phase1, stages : int, optional
            Schedule (module doc); defaults T // 2 and floor(log2(T - phase1)).
        record : array of int, optional
            Strictly increasing step counts in [0, steps] at which the exact excess risks are
            recorded; default: only the end.
        seed : int
            Key of the counter-based generator.
        linear : bool
            Also run the linear baseline on the same samples.
        threads : int, optional
            OpenMP threads over replicas (``None``: QUADFAST_NUM_THREADS, OMP_NUM_THREADS,
            then the CPUs).  Results are bit-identical for every thread count.
        v0 : array_like (M,) or (R, M), optional
            Start of the quadratic model.
        replica0 : int
            Index of the first replica: the run is replicas ``replica0 .. replica0 + R - 1``
            (their streams, module doc), so a set of replicas can be run in parts, one part
            after another or on different machines, and equals one run of all of them bit
            for bit.
        """
        from ._ext import core as _core

        steps, phase1, stages = _check_schedule(steps, phase1, stages)
        R = V.positive_int(replicas, "replicas", maximum=(1 << 23) - 1)
        replica0 = V.positive_int(replica0, "replica0", minimum=0, maximum=(1 << 23) - 1 - R)
        lr = self.default_lr() if lr is None else V.positive_float(lr, "lr")
        lr_linear = self.default_lr_linear() if lr_linear is None else V.positive_float(lr_linear, "lr_linear")
        seed = V.seed_int(seed)
        nthreads = _threads.resolve(threads)
        rec = _record(record, steps)
        if v0 is None:
            init = V.real_float(init, "init")
            v = np.full((R, self.M), init)
        else:
            v0 = np.asarray(v0)
            if v0.ndim == 1:
                v = np.tile(V.float_array(v0, "v0", 1, shape=(self.M,)), (R, 1))
            else:
                v = V.float_array(v0, "v0", 2, shape=(R, self.M)).copy()
        w = np.zeros((R, self.M)) if linear else None
        K = rec.size
        risk = np.empty((K, R))
        risk_l = np.empty((K, R)) if linear else None
        div = np.zeros(R, dtype=np.int64)
        div_l = np.zeros(R, dtype=np.int64) if linear else None
        _core.qplr_run(np.sqrt(self.lam), self.lam, self.theta, math.sqrt(self.tail), self.noise, steps, phase1,
                       stages, lr, lr_linear, seed, replica0, rec, v, w, risk, risk_l, div, div_l, nthreads)
        return QPLRRun(steps=rec, risk=risk, risk_linear=risk_l, v=v, w=w, diverged=div, diverged_linear=div_l,
                       lr=lr, lr_linear=lr_linear, phase1=phase1, stages=stages)

    def normals(self, steps: int, replicas: int, seed: int = 0) -> np.ndarray:
        """The deviates the kernel draws, shape (steps, replicas, M + 2): [t, r] is stream
        (r << 40) + t.  For tests and the NumPy reference; O(T R M) memory."""
        from ._ext import core as _core

        steps = V.positive_int(steps, "steps", maximum=(1 << _STEP_BITS) - 1)
        R = V.positive_int(replicas, "replicas", maximum=(1 << 23) - 1)
        seed = V.seed_int(seed)
        G = np.empty((R, steps, self.M + 2))
        for r in range(R):
            _core.fill_normals(G[r], seed, r << _STEP_BITS)
        return np.ascontiguousarray(G.transpose(1, 0, 2))

    def __repr__(self) -> str:
        return f"QPLR(M={self.M}, alpha={self.alpha:g}, beta={self.beta:g}, noise={self.noise:g})"


def _record(record, steps: int) -> np.ndarray:
    return np.ascontiguousarray(_record_points(record, steps))
