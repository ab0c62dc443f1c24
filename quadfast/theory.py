r"""Scaling-law statements of MODEL.md §5 as functions, and a log-log slope fit.

Conventions
-----------
quadfast's letters: ``alpha`` is the decay of the teacher coefficients
(``lambda_j = j^-alpha / ||(k^-alpha)_k||_2``), ``beta`` the width exponent
(``r = ceil(d^beta)``); the seeds swap them. Time is SGD time ``t = lr * steps`` and the
flow is ``dG/dt = 4 (Lambda G + G Lambda - 2 G Lambda G)``; the papers' time is
``tau = 4 t`` (their ``1/||A||_F = 1`` since ``||lambda||_2 = 1``).

Emergence (derivation)
----------------------
Decoupled, feature j obeys the logistic ``dg/dt = 8 lambda_j g (1 - g)`` (the diagonal
of the flow when the off-diagonal overlaps are neglected) from its typical start
``g_j(0) = N/d`` (a Haar student: ``E ||W^T theta_j||^2 = N/d``), so
``g_j(t) = 1 / (1 + (d/N - 1) e^{-8 lambda_j t})`` crosses the level ``q`` at

.. math:: t_j(q) = \frac{\log(d/N - 1) + \log(q / (1 - q))}{8 \lambda_j},

i.e. ``t_j = log(d/N - 1) / (8 lambda_j)`` at half alignment (``tau_j = log(d/N-1) /
(2 lambda_j)``): the papers' "feature j is learned after time ~ log d / lambda_j".

Risk power law (derivation, alpha > 1/2)
----------------------------------------
Additive model: ``R(t) = sum_{j not learned by t} lambda_j^2`` (``||lambda|| = 1``),
feature j learned at ``t_j = Z j^alpha ell / 8`` with ``Z = ||(k^-alpha)||_2`` and
``ell = log(d/N - 1)``. So ``J(t) = (8 t / (Z ell))^{1/alpha}`` features are learned and

.. math:: R(t) \approx \sum_{j > J} \frac{j^{-2\alpha}}{Z^2}
          \approx \frac{J(t)^{1 - 2\alpha}}{(2\alpha - 1) Z^2}
          \propto t^{(1 - 2\alpha)/\alpha},

until ``J(t)`` reaches ``min(r, N)``: with finite r the sum is
``(J^{1-2alpha} - r^{1-2alpha}) / ((2alpha-1) Z^2)`` and the local slope
``d log R / d log t = ((1-2alpha)/alpha) / (1 - (J/r)^{2alpha-1})`` bends away from the
power law (the finite-r bend), and with ``N < r`` the risk floors at
``sum_{j > N} lambda_j^2 ~ N^{1-2alpha}``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.special
import scipy.stats

__all__ = [
    "SlopeFit",
    "risk_exponent",
    "emergence_time",
    "learned_count",
    "additive_risk",
    "risk_power_law",
    "risk_alpha_below_half",
    "powerlaw_window",
    "learning_rate",
    "sample_size",
    "qplr_effective_dimension",
    "qplr_rate_exponent",
    "fit_loglog_slope",
]


def _check_alpha(alpha, name="alpha"):
    a = float(alpha)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {alpha!r}")
    return a


def _check_pos(x, name):
    v = np.asarray(x, dtype=np.float64)
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name} must be finite and > 0")
    return v


def _zeta_norm(alpha, r=None):
    # Z = ||(k^-alpha)_{k<=r}||_2 ; r=None: the infinite sum (alpha > 1/2)
    if r is None:
        return math.sqrt(float(scipy.special.zeta(2 * alpha, 1)))
    k = np.arange(1, int(r) + 1, dtype=np.float64)
    return float(np.sqrt(np.sum(k ** (-2 * alpha))))


def risk_exponent(alpha):
    """Exponent of the gradient-flow risk, ``R(t) ~ t^{(1 - 2 alpha) / alpha}`` (alpha > 1/2).

    Raises
    ------
    ValueError
        For ``alpha <= 1/2`` (no power law in t: see :func:`risk_alpha_below_half`).
    """
    a = _check_alpha(alpha)
    if a <= 0.5:
        raise ValueError(f"alpha must be > 1/2 for the power law, got {alpha!r}")
    return (1.0 - 2.0 * a) / a


def emergence_time(coef, d, width, level=0.5, c=4.0):
    """Time ``t = lr * steps`` at which the decoupled logistic of a feature reaches ``level``.

    ``t = (log(d/N - 1) + log(q/(1-q))) / (2 c lambda)`` (module docstring), ``c = 4``.

    Parameters
    ----------
    coef : float or array_like
        Coefficient(s) ``lambda_j > 0``.
    d, width : int
        Dimension and student width N (``N < d/2``, so that ``g(0) = N/d < 1/2``).
    level : float in (0, 1)
    """
    lam = _check_pos(coef, "coef")
    if not (isinstance(d, (int, np.integer)) and isinstance(width, (int, np.integer))):
        raise TypeError("d and width must be integers")
    if not 1 <= width < d / 2:
        raise ValueError(f"width must satisfy 1 <= width < d/2, got width={width}, d={d}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    ell = math.log(d / width - 1.0) + math.log(level / (1.0 - level))
    return ell / (2.0 * c * lam)


def learned_count(t, alpha, d, width, r=None, c=4.0):
    """Continuous count ``J(t) = (2 c t / (Z log(d/N - 1)))^{1/alpha}`` of features past half alignment.

    ``Z = ||(k^-alpha)_{k<=r}||_2`` (``r=None``: the infinite sum). Not capped at r.
    """
    a = _check_alpha(alpha)
    t = np.asarray(t, dtype=np.float64)
    Z = _zeta_norm(a, r)
    ell = math.log(d / width - 1.0)
    return (2.0 * c * t / (Z * ell)) ** (1.0 / a)


def additive_risk(times, coef, d, width, c=4.0):
    """Additive-model risk: ``sum of lambda_j^2`` over features not yet learned, / ``sum lambda^2``.

    Feature j counts as learned at ``emergence_time(lambda_j, d, width)`` if it is among
    the ``width`` largest; the others never are (width floor).
    """
    lam = np.asarray(coef, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(-lam, kind="stable")
    ls = lam[order]
    l2 = ls**2
    tj = np.full(ls.shape, np.inf)
    pos = ls > 0
    tj[pos] = emergence_time(ls[pos], d, width, c=c)
    tj[width:] = np.inf
    learned = t[..., None] >= tj
    return 1.0 - (learned * l2).sum(-1) / l2.sum()


def risk_power_law(times, alpha, d, width, r=None, c=4.0):
    """Asymptotic risk ``J(t)^{1-2alpha} / ((2alpha-1) Z^2)`` of the module docstring (alpha > 1/2).

    With ``r`` given, the finite-r form ``(J^{1-2a} - r^{1-2a}) / ((2a-1) Z_r^2)`` for
    ``J < r`` (0 beyond), which shows the finite-r bend; ``width`` enters through the
    start ``g(0) = N/d`` only (use ``min(r, width)`` as r for the width floor).
    """
    a = _check_alpha(alpha)
    risk_exponent(a)
    J = learned_count(times, a, d, width, r=r, c=c)
    Z2 = _zeta_norm(a, r) ** 2
    if r is None:
        return J ** (1 - 2 * a) / ((2 * a - 1) * Z2)
    J = np.maximum(J, 1.0)
    return np.clip(J ** (1 - 2 * a) - float(r) ** (1 - 2 * a), 0, None) / ((2 * a - 1) * Z2)


def risk_alpha_below_half(t, alpha, phi):
    r"""§5 statement for ``alpha < 1/2`` with ``N/r -> phi``, in the papers' time unit.

    ``L(t r log d) ~ [max(1 - t^{(1-2alpha)/alpha}, 1 - phi^{1-2alpha})]_+``: here ``t`` is
    the papers' time divided by ``r log d`` (papers' time ``tau = 4 * lr * steps``).
    """
    a = _check_alpha(alpha)
    if a >= 0.5:
        raise ValueError(f"alpha must be < 1/2 for this statement, got {alpha!r}")
    phi = _check_pos(phi, "phi")
    t = np.asarray(t, dtype=np.float64)
    return np.clip(np.maximum(1 - t ** ((1 - 2 * a) / a), 1 - np.minimum(phi, 1.0) ** (1 - 2 * a)), 0, None)


def powerlaw_window(alpha, d, width, r, j_lo=8, eps=0.05, c=4.0):
    """Window ``(t_lo, t_hi)`` where the risk should follow ``t^{(1-2alpha)/alpha}``.

    ``t_lo`` is the emergence time of feature ``j_lo`` (before it the curve is the plateau
    and the first few discrete drops); ``t_hi`` that of feature
    ``j_hi = min(r, N) * (eps / (1 + eps))^{1/(2alpha-1)}``, where the finite-r bend
    changes the local slope by the relative amount ``eps`` (module docstring).
    """
    a = _check_alpha(alpha)
    risk_exponent(a)
    m = min(r, width)
    j_hi = m * (eps / (1 + eps)) ** (1.0 / (2 * a - 1))
    if j_hi <= j_lo:
        raise ValueError(f"no power-law window: j_hi = {j_hi:.3g} <= j_lo = {j_lo} (increase r or eps)")
    Z = _zeta_norm(a, r)
    lam = lambda j: j ** (-a) / Z  # noqa: E731
    return float(emergence_time(lam(j_lo), d, width, c=c)), float(emergence_time(lam(j_hi), d, width, c=c))


def learning_rate(d, alpha, r=None, log_power=1.0, const=1.0):
    """§5 step-size prescription for online SGD to track the flow (constants unspecified).

    ``alpha > 1/2``: ``lr = const / (d log(d)^p)``; ``alpha < 1/2``:
    ``lr = const / (d r^alpha log(1 + d/r)^p)`` (``p = log_power`` stands for "polylog").
    """
    a = _check_alpha(alpha)
    d = float(_check_pos(d, "d"))
    if a > 0.5:
        return const / (d * math.log(d) ** log_power)
    if a < 0.5:
        if r is None:
            raise ValueError("r is required when alpha < 1/2")
        r = float(_check_pos(r, "r"))
        return const / (d * r**a * math.log1p(d / r) ** log_power)
    raise ValueError("alpha = 1/2 is the boundary case: no prescription is stated")


def sample_size(d, alpha, r=None, log_power=1.0, const=1.0):
    """§5 sample size ``n`` of online SGD (one sample per step; constants unspecified).

    ``alpha > 1/2``: ``n = const d log(d)^p``; ``alpha < 1/2``:
    ``n = const d r^{1+alpha} log(1 + d/r)^p``.
    """
    a = _check_alpha(alpha)
    d = float(_check_pos(d, "d"))
    if a > 0.5:
        return const * d * math.log(d) ** log_power
    if a < 0.5:
        if r is None:
            raise ValueError("r is required when alpha < 1/2")
        r = float(_check_pos(r, "r"))
        return const * d * r ** (1 + a) * math.log1p(d / r) ** log_power
    raise ValueError("alpha = 1/2 is the boundary case: no prescription is stated")


def qplr_effective_dimension(T, M, a_data, b_target):
    """Seed 003 (quadratically parameterised linear regression): ``D = min(T^{1/max(b, (a+b)/2)}, M)``.

    Letters of that paper: data spectrum ``i^-a_data``, target coefficients ``i^-b_target``.
    """
    T = _check_pos(T, "T")
    e = max(b_target, 0.5 * (a_data + b_target))
    if e <= 0:
        raise ValueError("max(b_target, (a_data + b_target)/2) must be > 0")
    return np.minimum(T ** (1.0 / e), M)


def qplr_rate_exponent(a_data, b_target):
    """Seed 003: excess risk ``~ T^{-(2b - 2)/(a + b)}`` when ``a_data > b_target``; returns the exponent."""
    if not a_data > b_target:
        raise ValueError("the rate is stated for a_data > b_target")
    return -(2.0 * b_target - 2.0) / (a_data + b_target)


class SlopeFit(NamedTuple):
    """Result of :func:`fit_loglog_slope`."""

    slope: float
    intercept: float  # of log(y) against log(t), natural logs
    ci_low: float
    ci_high: float
    stderr: float
    n: int
    level: float
    window: tuple


def fit_loglog_slope(t, y, window=None, level=0.95):
    r"""Ordinary least squares of ``log y`` on ``log t`` over a window, with a t-based CI.

    ``log y = intercept + slope * log t``; the interval is
    ``slope +- t_{(1+level)/2, n-2} * se`` with ``se^2 = s^2 / sum (x - xbar)^2``.
    Along a smooth curve the residuals are not independent (they are systematic and
    autocorrelated), so the interval is *nominal*: it measures the straightness of the
    curve on the grid, not a sampling uncertainty. Judge the slope against the theory
    with a tolerance, not by the CI alone.

    Parameters
    ----------
    t, y : array_like
        Positive values (points with ``y <= 0`` inside the window raise).
    window : (t_lo, t_hi), optional
        Inclusive range of ``t`` used; all points when omitted. At least 3 points.
    level : float in (0, 1)

    Returns
    -------
    SlopeFit
    """
    t = np.asarray(t, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if t.shape != y.shape:
        raise ValueError(f"t and y must have the same length, got {t.size} and {y.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if window is None:
        window = (float(np.min(t)), float(np.max(t)))
    lo, hi = window
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"window must be (t_lo, t_hi) with 0 < t_lo < t_hi, got {window!r}")
    sel = (t >= lo) & (t <= hi)
    if sel.sum() < 3:
        raise ValueError(f"window {window!r} holds {int(sel.sum())} points; need at least 3")
    if np.any(y[sel] <= 0) or np.any(~np.isfinite(y[sel])):
        raise ValueError("y must be finite and > 0 inside the window")
    x, z = np.log(t[sel]), np.log(y[sel])
    n = x.size
    xm, zm = x.mean(), z.mean()
    sxx = np.sum((x - xm) ** 2)
    slope = np.sum((x - xm) * (z - zm)) / sxx
    intercept = zm - slope * xm
    resid = z - intercept - slope * x
    s2 = np.sum(resid**2) / (n - 2) if n > 2 else 0.0
    se = math.sqrt(s2 / sxx)
    q = scipy.stats.t.ppf(0.5 + level / 2, n - 2)
    return SlopeFit(float(slope), float(intercept), float(slope - q * se), float(slope + q * se), float(se), int(n), float(level), (float(lo), float(hi)))
