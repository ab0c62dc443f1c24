r"""Population dynamics of Stiefel SGD: the matrix Riccati equation (MODEL.md §4).

Conventions
-----------
* Time is SGD time, ``t = lr * steps``.
* The overlap matrix ``G = Theta^T W W^T Theta`` (r x r) obeys

  .. math:: \dot G = c\,(\Lambda G + G\Lambda - 2 G\Lambda G),\qquad c = 4,

  with ``Lambda = diag(coef)`` (the papers write ``(AG + GA - 2GAG)/||A||_F``: the same
  equation in the time unit ``tau = 4 t`` when ``||coef||_2 = 1``).
* Risk of a Stiefel student after the radial refit:
  ``R = 1 - tr((G Lambda)^2) / tr(Lambda^2)``; alignment ``A_j = G_jj``.

The state as a factor
---------------------
A width-N student gives ``G = U1 U1^T`` with ``U1 = Theta^T W`` (r x N). The part of
``W`` orthogonal to ``Theta`` enters only through its Gram matrix
``U2^T U2 = I - U1^T U1``, so the *state* is the pair ``(U1, U2)`` (``U2`` is N x N)
with ``U1^T U1 + U2^T U2 = I``: the ``(r + N) x N`` matrix ``Z = [U1; U2]`` has
orthonormal columns. :class:`Start` holds that pair.

Closed form (Oja flow)
----------------------
``W(t) = e^{c M* t} W0 (W0^T e^{2 c M* t} W0)^{-1/2}`` gives ``G(t) = Q1 Q1^T`` with
``Q1`` the first r rows of an orthonormal basis of ``range(D(t) Z)``,
``D(t) = diag(exp(c lambda_j t), ..., 1, ..., 1)``. Evaluated as written it overflows
(``exp(4e6)`` at ``t = 1e6``). quadfast evaluates it exactly and without overflow:

1. Sort the rows of ``U1`` by decreasing ``lambda`` and append the rows of ``U2``
   (rate 0), so the row rates ``a_i`` are non-increasing.
2. Once per start, factor ``Z = L Q^T`` with ``Q`` orthogonal (N x N) and ``L``
   *pivoted lower trapezoidal*: column k of ``L`` vanishes above its pivot row
   ``p_k`` and ``p_1 < p_2 < ...`` (greedy in row order; a row whose residual is below
   ``1e-14`` is dependent and is not a pivot). ``range(D Z) = range(D L)``.
3. At time t scale column k by ``exp(-a_{p_k} t)``:
   ``M_ik = exp((a_i - a_{p_k}) t) L_ik``. Every exponent is <= 0 (rows at or below a
   pivot have smaller or equal rates), the pivot entry is unscaled, so ``M`` has
   entries in [-1, 1], full column rank, and the same column space as ``D Z``:
   no overflow, and underflow only drops terms below ``1e-308`` of a unit entry.
4. Orthonormalise: columns normalised, Cholesky ``M^T M = R^T R`` (Householder QR
   when ``R`` is poorly conditioned), ``Q = M R^{-1}``, ``G = Q1 Q1^T``.

Per time point this costs ``O((r + N) N^2)``; the risk uses
``tr((G Lambda)^2) = ||Q1^T Lambda Q1||_F^2`` and the alignment the row norms of
``Q1``, so no r x r matrix is formed. The risk is computed as ``1 - (...)``, i.e. to an
absolute accuracy of about ``1e-15`` (not relative to a tiny risk).

A ``G0`` given as a matrix is factored by ``eigh``: ``U1 = V sqrt(mu)`` and, exactly,
``U2 = diag(sqrt(1 - mu))``. A floating-point ``G0`` is not exactly of rank N: its
rounding-level eigenvalues (``~1e-17``) are genuine initial overlaps to the dynamics,
which amplify them by ``exp(8 lambda t)``, so at long times ``solve(G0=U1 @ U1.T)``
and ``solve(factor=U1)`` differ (the former eventually learns directions that a width-N
student cannot). Pass the factor when the rank matters, or ``rank=N``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.linalg
from scipy.linalg import blas as _blas
from scipy.linalg import lapack as _lapack

from ._jit import jit

__all__ = [
    "Start",
    "Bounds",
    "ComparisonRisk",
    "solve",
    "risk_curve",
    "alignment_curve",
    "evolve_start",
    "integrate",
    "risk_from_G",
    "teacher_coef",
    "typical_start",
    "start_from_W",
    "start_from_simulator",
    "start_from_G0",
    "logistic",
    "comparison_bounds",
    "comparison_risk",
]

#: Tolerance for "U1^T U1 <= I", "G0 symmetric" and "eigenvalues of G0 in [0, 1]".
INPUT_TOL = 1e-9
#: Rows of Z whose residual (after projecting out earlier pivot rows) is below this
#: are treated as exactly dependent in the pivoted factorisation.
DROP_TOL = 1e-14
#: Cholesky-QR is used when max(diag R)/min(diag R) is below this; Householder QR otherwise.
_CHOL_COND = 1e3
_FLUSH = 1e-150


# ----------------------------------------------------------------------------- input
def _as_real_array(x, name):
    try:
        a = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be array-like of real numbers") from exc
    if a.dtype == object or a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    return np.array(a, dtype=np.float64, order="C")


def _check_coef(coef, name="coef"):
    a = _as_real_array(coef, name)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (found nan or inf)")
    if np.any(a < 0):
        raise ValueError(f"{name} must be non-negative (min is {a.min():.3g})")
    return a


def _check_times(times):
    t = np.atleast_1d(_as_real_array(times, "times"))
    if t.ndim != 1:
        raise ValueError(f"times must be a scalar or a 1-d array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite (found nan or inf)")
    if t.size and t.min() < 0:
        raise ValueError(f"times must be >= 0 (min is {t.min():.3g})")
    if np.any(np.diff(t) < 0):
        raise ValueError("times must be sorted in non-decreasing order")
    return t


def _check_G0(G0, r, name="G0"):
    g = _as_real_array(G0, name)
    if g.shape != (r, r):
        raise ValueError(f"{name} must have shape ({r}, {r}) to match coef, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{name} must be finite (found nan or inf)")
    asym = np.max(np.abs(g - g.T)) if r else 0.0
    if asym > INPUT_TOL:
        raise ValueError(f"{name} must be symmetric (max |G0 - G0^T| = {asym:.3g} > {INPUT_TOL:g})")
    g = 0.5 * (g + g.T)
    mu, V = np.linalg.eigh(g)
    if mu[0] < -INPUT_TOL or mu[-1] > 1 + INPUT_TOL:
        raise ValueError(
            f"{name} must be positive semidefinite with eigenvalues in [0, 1] "
            f"(tolerance {INPUT_TOL:g}); its eigenvalues span [{mu[0]:.3g}, {mu[-1]:.3g}]"
        )
    return g, np.clip(mu, 0.0, 1.0), V


class Start(NamedTuple):
    """Initial (or current) state of a width-N student, as a factor pair.

    Attributes
    ----------
    factor : ndarray, shape (r, N)
        ``U1 = Theta^T W`` (overlaps with the teacher directions).
    complement : ndarray, shape (N, N)
        Any ``U2`` with ``U2^T U2 = I - U1^T U1`` (the Gram matrix of the part of ``W``
        orthogonal to ``Theta``).
    """

    factor: np.ndarray
    complement: np.ndarray

    @property
    def G(self):
        """The overlap matrix ``U1 U1^T`` (r x r)."""
        return self.factor @ self.factor.T


def _check_factor(factor, r, complement=None):
    if isinstance(factor, Start):
        if complement is None:
            complement = factor.complement
        factor = factor.factor
    U1 = _as_real_array(factor, "factor")
    if U1.ndim != 2 or U1.shape[0] != r or U1.shape[1] == 0:
        raise ValueError(f"factor must have shape (r, N) = ({r}, N) with N >= 1, got {U1.shape}")
    if not np.all(np.isfinite(U1)):
        raise ValueError("factor must be finite (found nan or inf)")
    N = U1.shape[1]
    P = U1.T @ U1
    if complement is None:
        s2, V = np.linalg.eigh(P)
        if s2[-1] > 1 + INPUT_TOL:
            raise ValueError(
                f"factor must satisfy U1^T U1 <= I (tolerance {INPUT_TOL:g}; it is Theta^T W "
                f"for W with orthonormal columns); its largest eigenvalue is {s2[-1]:.6g}"
            )
        # U2 = (I - U1^T U1)^{1/2}
        U2 = (V * np.sqrt(np.clip(1.0 - s2, 0.0, 1.0))) @ V.T
    else:
        U2 = _as_real_array(complement, "complement")
        if U2.shape != (N, N):
            raise ValueError(f"complement must have shape ({N}, {N}), got {U2.shape}")
        err = np.max(np.abs(P + U2.T @ U2 - np.eye(N)))
        if not err <= 1e-8:
            raise ValueError(f"complement must satisfy U1^T U1 + U2^T U2 = I (error {err:.3g})")
    return U1, U2


def _start_from_inputs(coef, factor, G0, complement=None, rank=None):
    r = coef.shape[0]
    if (factor is None) == (G0 is None):
        raise TypeError("give exactly one of factor= and G0=")
    if factor is not None:
        return _check_factor(factor, r, complement)
    g = _as_real_array(G0, "G0")
    if g.shape != (r, r):
        raise ValueError(f"G0 must have shape ({r}, {r}) to match coef, got {g.shape}")
    s = start_from_G0(g, rank=rank)
    return s.factor, s.complement


# ------------------------------------------------------------------ initial conditions
def teacher_coef(r, alpha):
    """Teacher coefficients ``lambda_j = j^-alpha / ||(k^-alpha)_k||_2``, j = 1..r (MODEL.md §1)."""
    if not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"r must be a positive integer, got {r!r}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
    lam = np.arange(1, r + 1, dtype=np.float64) ** (-float(alpha))
    return lam / np.linalg.norm(lam)


def start_from_G0(G0, rank=None):
    """Factor a given overlap matrix ``G0`` into a :class:`Start`.

    ``G0 = V diag(mu) V^T`` (``eigh``), ``U1 = V[:, keep] sqrt(mu_keep)`` and
    ``U2 = diag(sqrt(1 - mu_keep))`` (exact, no cancellation). ``keep`` holds the
    eigenvalues > 0, or the ``rank`` largest when ``rank`` is given.

    Parameters
    ----------
    G0 : array_like, shape (r, r)
        Symmetric with eigenvalues in [0, 1] (tolerance ``INPUT_TOL = 1e-9``; values are
        then clipped into [0, 1]).
    rank : int, optional
        Keep only this many leading eigenpairs (a width-``rank`` student).
    """
    g = _as_real_array(G0, "G0")
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"G0 must be a non-empty square matrix, got shape {g.shape}")
    _, mu, V = _check_G0(g, g.shape[0])
    if rank is None:
        keep = np.flatnonzero(mu > 0)
        if keep.size == 0:
            keep = np.array([mu.size - 1])
    else:
        if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= mu.size:
            raise ValueError(f"rank must be an integer in [1, {mu.size}], got {rank!r}")
        keep = np.arange(mu.size - rank, mu.size)
    mu_k = mu[keep]
    return Start(np.ascontiguousarray(V[:, keep] * np.sqrt(mu_k)), np.diag(np.sqrt(1.0 - mu_k)))


def typical_start(d, width, r, rng=None):
    r"""Draw the overlap factor of a Haar-uniform student, without forming ``W`` (d x N).

    Law used (exact): a Haar point of the Stiefel manifold is the polar factor
    ``W = X (X^T X)^{-1/2}`` of a Gaussian ``X`` (d x N). Split ``X = [A; B]`` with
    ``A`` (r x N) and ``B`` ((d - r) x N); then ``U1 = A C^{-1/2}`` with
    ``C = A^T A + B^T B``, and ``B^T B ~ Wishart_N(d - r, I)`` is drawn by the Bartlett
    decomposition ``B^T B = T T^T`` (``T`` lower triangular, ``T_ii^2 ~ chi^2_{d-r-i+1}``,
    ``T_ij ~ N(0, 1)`` below the diagonal). The complement is ``U2 = T^T C^{-1/2}``
    (so ``U2^T U2 = C^{-1/2} B^T B C^{-1/2} = I - U1^T U1`` exactly). Cost
    ``O(r N^2 + N^3)``, memory ``O((r + N) N)``, whatever ``d``.

    Parameters
    ----------
    d : int
        Input dimension, ``d >= r + width``.
    width : int
        Student width N.
    r : int
        Number of teacher directions (canonical frame: the first r coordinates).
    rng : numpy.random.Generator or int, optional

    Returns
    -------
    Start
    """
    for name, v in (("d", d), ("width", width), ("r", r)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if d < r + width:
        raise ValueError(f"d must be >= r + width = {r + width} for the Bartlett draw, got d={d}")
    rng = np.random.default_rng(rng)
    N = int(width)
    A = rng.standard_normal((r, N))
    T = np.tril(rng.standard_normal((N, N)), -1)
    dof = (d - r) - np.arange(N)  # chi^2 degrees of freedom of the diagonal
    T[np.diag_indices(N)] = np.sqrt(rng.chisquare(dof))
    C = A.T @ A + T @ T.T
    w, V = np.linalg.eigh(C)
    C_isqrt = (V / np.sqrt(w)) @ V.T
    return Start(np.ascontiguousarray(A @ C_isqrt), np.ascontiguousarray(T.T @ C_isqrt))


def start_from_W(W0, r=None, directions=None, complement="stiefel"):
    """Overlap factor of a given student ``W0`` (d x N, orthonormal columns).

    Parameters
    ----------
    W0 : array_like, shape (d, N)
    r : int, optional
        Canonical frame (``directions is None``): ``Theta = [e_1..e_r]`` and
        ``U1 = W0[:r]``.
    directions : array_like, shape (d, r), optional
        Explicit orthonormal teacher directions: ``U1 = directions^T W0``.
    complement : {"stiefel", "exact"}
        ``"stiefel"`` assumes ``W0^T W0 = I`` and takes ``U2 = (I - U1^T U1)^{1/2}``
        (``O(r N^2 + N^3)``); ``"exact"`` uses the R factor of the QR decomposition of
        ``(I - Theta Theta^T) W0`` (``O(d N^2)``).
    """
    W = _as_real_array(W0, "W0")
    if W.ndim != 2:
        raise ValueError(f"W0 must be a 2-d array (d, N), got shape {W.shape}")
    if directions is None:
        if r is None or not isinstance(r, (int, np.integer)) or not 1 <= r <= W.shape[0]:
            raise ValueError(f"r must be an integer in [1, d={W.shape[0]}] in the canonical frame, got {r!r}")
        U1 = W[:r].copy()
        rest = W[r:] if complement == "exact" else None
    else:
        Th = _as_real_array(directions, "directions")
        if Th.ndim != 2 or Th.shape[0] != W.shape[0]:
            raise ValueError(f"directions must have shape (d={W.shape[0]}, r), got {Th.shape}")
        U1 = Th.T @ W
        rest = W - Th @ U1 if complement == "exact" else None
    if complement == "stiefel":
        return Start(*_check_factor(U1, U1.shape[0]))
    if complement != "exact":
        raise ValueError(f"complement must be 'stiefel' or 'exact', got {complement!r}")
    R = np.linalg.qr(rest, mode="r")
    U2 = np.zeros((U1.shape[1], U1.shape[1]))
    U2[: R.shape[0]] = R
    return Start(*_check_factor(U1, U1.shape[0], U2))


def start_from_simulator(sim, complement="stiefel"):
    """Coefficients and overlap factor of a simulator's current student.

    ``sim`` is anything with ``sim.W`` (d x N) and ``sim.teacher`` having ``.coef`` (r,)
    and ``.directions`` (``None`` for the canonical frame, else d x r).

    Returns
    -------
    coef : ndarray, shape (r,)
    start : Start
    """
    teacher = sim.teacher
    coef = _check_coef(teacher.coef)
    directions = getattr(teacher, "directions", None)
    start = start_from_W(np.asarray(sim.W), r=coef.size, directions=directions, complement=complement)
    return coef, start


# ------------------------------------------------------------ pivoted factorisation
@jit("Tuple((float64[:, ::1], int64[::1]))(float64[:, ::1], float64)")
def _pivoted_lq_jit(Z, droptol):
    # Greedy Householder LQ in row order (see the module docstring, step 2).
    m, n = Z.shape
    L = Z.copy()
    piv = np.empty(n, dtype=np.int64)
    v = np.zeros(n)
    k = 0
    for i in range(m):
        if k == n:
            break
        s = 0.0
        for j in range(k, n):
            s += L[i, j] * L[i, j]
        nrm = math.sqrt(s)
        if nrm <= droptol:
            for j in range(k, n):
                L[i, j] = 0.0
            continue
        x0 = L[i, k]
        beta = -nrm if x0 >= 0.0 else nrm
        for j in range(k, n):
            v[j] = L[i, j]
        v[k] = x0 - beta
        vv = s - x0 * x0 + v[k] * v[k]
        L[i, k] = beta
        for j in range(k + 1, n):
            L[i, j] = 0.0
        if vv > 0.0:
            for row in range(i + 1, m):
                dot = 0.0
                for j in range(k, n):
                    dot += L[row, j] * v[j]
                f = 2.0 * dot / vv
                for j in range(k, n):
                    L[row, j] -= f * v[j]
        piv[k] = i
        k += 1
    if k < n:
        piv[k:] = -1
    return L, piv


def _pivoted_lq_numpy(Z, droptol):
    """NumPy twin of :func:`_pivoted_lq_jit` (same algorithm, vectorised rows)."""
    L = np.array(Z, dtype=np.float64, copy=True)
    m, n = L.shape
    piv = np.full(n, -1, dtype=np.int64)
    k = 0
    for i in range(m):
        if k == n:
            break
        x = L[i, k:].copy()
        nrm = np.sqrt(x @ x)
        if nrm <= droptol:
            L[i, k:] = 0.0
            continue
        beta = -nrm if x[0] >= 0 else nrm
        v = x.copy()
        v[0] -= beta
        vv = v @ v
        L[i, k] = beta
        L[i, k + 1 :] = 0.0
        if vv > 0:
            L[i + 1 :, k:] -= np.outer((2.0 / vv) * (L[i + 1 :, k:] @ v), v)
        piv[k] = i
        k += 1
    return L, piv


class _Frame:
    """Precomputation of the closed form for one (coef, start): O((r + N) N^2), once."""

    def __init__(self, coef, U1, U2, c):
        r, N = U1.shape
        self.r, self.N, self.c = r, N, float(c)
        self.order = np.argsort(-coef, kind="stable")
        self.lam_sorted = coef[self.order]
        Z = np.ascontiguousarray(np.vstack([U1[self.order], U2]))
        self.rates = np.concatenate([self.c * self.lam_sorted, np.zeros(N)])
        Rt = np.linalg.qr(Z.T, mode="r")  # Z^T = Q R  =>  Z = R^T Q^T, unpivoted
        if Rt.shape[0] == N and np.all(np.abs(np.diag(Rt)) > DROP_TOL):
            L, piv = np.ascontiguousarray(Rt.T), np.arange(N, dtype=np.int64)
        else:
            L, piv = _pivoted_lq_jit(Z, DROP_TOL)
            if np.any(piv < 0):  # pragma: no cover - Z has orthonormal columns
                raise np.linalg.LinAlgError("the start [U1; U2] is numerically rank deficient")
        self.L1T, self.piv = np.ascontiguousarray(L[:r].T), piv
        self.triangular = r >= N and bool(np.all(piv == np.arange(N)))
        self.L2 = L[r:]  # rate 0 rows: M2 = L2 * exp(-a_piv), no exponent clamp needed
        self.G22 = self.L2.T @ self.L2

    def basis(self, t):
        """Q = [Q1; Q2], orthonormal basis of range(D(t) Z), in sorted row order.

        Returns ``Q1`` (r x N, Fortran order), the upper triangular ``R`` with
        ``Q = M R^{-1}`` and the column scalings ``s`` of the rate-0 rows
        (``M2 = L2 * s``).
        """
        ap = self.rates[self.piv] * t
        # Work with M1^T (C order) = M1 (Fortran order): what BLAS wants, no copies.
        expo = np.subtract.outer(ap, self.rates[: self.r] * t)
        np.negative(expo, out=expo)
        np.minimum(expo, 0.0, out=expo)  # structural zeros of L1 sit where expo > 0
        M1T = np.exp(expo, out=expo)
        M1T *= self.L1T
        s = np.exp(-ap)
        # Flush entries below 1e-150 to zero: relative to a column whose norm is >= DROP_TOL
        # they are far below rounding, and products of them would be subnormal numbers,
        # which slow BLAS/LAPACK down by 100x (seen: Cholesky 1.3 s instead of 0.013 s).
        M1T[np.abs(M1T) < _FLUSH] = 0.0
        s[s < _FLUSH] = 0.0
        M1 = M1T.T
        N = self.N
        if self.triangular:
            # pivots are the first N rows: the top N x N block of M1 is lower triangular
            K, _ = _lapack.dlauum(np.asfortranarray(M1[:N]), lower=1)  # lower of Ma^T Ma
            K = K.T  # upper triangle, as dpotrf(lower=0) reads it
            if self.r > N:
                K += _blas.dsyrk(1.0, M1[N:], trans=1)
        else:
            K = _blas.dsyrk(1.0, M1, trans=1)  # upper triangle of M1^T M1
        G = self.G22 * s
        G *= s[:, None]
        K += G
        # Cholesky is invariant under the column scaling of M (its error is relative to
        # sqrt(K_ii K_jj)), so the columns are not normalised; the conditioning test is
        # on the normalised factor diag(R) / sqrt(diag(K)).
        nrm = np.sqrt(np.diag(K))
        R, info = _lapack.dpotrf(K, lower=0, clean=1, overwrite_a=1)
        if info == 0:
            dR = np.abs(np.diag(R)) / nrm
            if not dR.min() * _CHOL_COND > dR.max():
                info = -1
        if info != 0:  # Householder QR of the full M (columnwise backward stable)
            M = np.vstack([M1, self.L2 * s])
            R = np.asfortranarray(np.linalg.qr(M, mode="r"))
        Q1 = _blas.dtrsm(1.0, R, M1, side=1, lower=0)  # Q1 R = M1
        Q1[np.abs(Q1) < _FLUSH] = 0.0
        return Q1, R, s

    def Q1(self, t):
        return self.basis(t)[0]


def _frame(coef, factor, G0, complement=None, rank=None, c=4.0):
    coef = _check_coef(coef)
    U1, U2 = _start_from_inputs(coef, factor, G0, complement, rank)
    return _Frame(coef, U1, U2, c)


# -------------------------------------------------------------------- closed form API
def solve(coef, times, factor=None, G0=None, *, complement=None, rank=None, c=4.0):
    r"""Overlap matrices ``G(t)`` of the Riccati flow, exactly and without overflow.

    Solves ``dG/dt = c (Lambda G + G Lambda - 2 G Lambda G)`` (``c = 4``: Stiefel SGD,
    ``t = lr * steps``) by the closed form ``G(t) = Q1 Q1^T`` (module docstring),
    valid for every ``t >= 0``.

    Parameters
    ----------
    coef : array_like, shape (r,)
        Non-negative finite teacher coefficients ``lambda_j`` (any order).
    times : array_like, shape (T,)
        Non-negative, non-decreasing times.
    factor : array_like (r, N) or Start, optional
        ``U1 = Theta^T W0`` with ``U1^T U1 <= I``. Keeps the rank N exact.
    G0 : array_like (r, r), optional
        Initial overlap matrix (symmetric, eigenvalues in [0, 1] up to 1e-9).
        Exactly one of ``factor`` and ``G0``.
    complement : array_like (N, N), optional
        ``U2`` with ``U2^T U2 = I - U1^T U1``; computed from ``factor`` if omitted.
    rank : int, optional
        With ``G0``: keep its ``rank`` leading eigenpairs (see the module docstring).
    c : float
        Rate constant of the equation.

    Returns
    -------
    ndarray, shape (T, r, r)
    """
    t = _check_times(times)
    fr = _frame(coef, factor, G0, complement, rank, c)
    inv = np.argsort(fr.order)
    out = np.empty((t.size, fr.r, fr.r))
    for k, tk in enumerate(t):
        Q1 = fr.Q1(tk)
        # SciPy's BLAS only inside the loop (see risk_curve)
        Gs = _blas.dsyrk(1.0, Q1, trans=0)  # upper triangle of Q1 Q1^T
        Gs = Gs + np.triu(Gs, 1).T
        out[k] = Gs[np.ix_(inv, inv)]
    return out


def risk_curve(coef, times, factor=None, G0=None, *, complement=None, rank=None, c=4.0):
    r"""Risk ``R(t) = 1 - tr((G Lambda)^2) / tr(Lambda^2)`` along the flow.

    Uses ``tr((G Lambda)^2) = ||Q1^T Lambda Q1||_F^2``: ``O((r + N) N^2 + N^3)`` per
    time, no r x r matrix is formed. Absolute accuracy about ``1e-15``. Parameters as
    in :func:`solve`.

    Returns
    -------
    ndarray, shape (T,)
    """
    t = _check_times(times)
    fr = _frame(coef, factor, G0, complement, rank, c)
    lam = fr.lam_sorted
    denom = lam @ lam
    sq = np.sqrt(lam)[:, None]
    out = np.empty(t.size)
    for k, tk in enumerate(t):
        B = fr.Q1(tk)
        B *= sq
        H = _blas.dsyrk(1.0, B, trans=1)  # upper triangle of Q1^T Lambda Q1
        # ||H||_F^2 from the upper triangle, without NumPy's BLAS: alternating between
        # NumPy's and SciPy's OpenBLAS thread pools made each call ~100x slower on 2 cores
        dH = np.diagonal(H)
        hh = 2.0 * np.einsum("ij,ij->", H, H) - np.einsum("i,i->", dH, dH)
        out[k] = 1.0 - hh / denom if denom > 0 else 0.0
    return out


def alignment_curve(coef, times, factor=None, G0=None, *, complement=None, rank=None, c=4.0):
    """Alignments ``A_j(t) = G_jj(t)`` (row norms of ``Q1``), shape (T, r), in the order of ``coef``.

    Parameters as in :func:`solve`; ``O((r + N) N^2 + N^3)`` per time.
    """
    t = _check_times(times)
    fr = _frame(coef, factor, G0, complement, rank, c)
    inv = np.argsort(fr.order)
    out = np.empty((t.size, fr.r))
    for k, tk in enumerate(t):
        Q1 = fr.Q1(tk)
        out[k] = np.einsum("ij,ij->i", Q1, Q1)[inv]
    return out


def evolve_start(coef, t, start, *, c=4.0):
    """The state at time ``t`` as a :class:`Start` (exact semigroup step of the flow).

    ``Q = [Q1; Q2]`` is an orthonormal basis of ``range(D(t) Z)``; the returned factor is
    ``Q1`` (original row order) and the complement ``Q2``, so ``G(t) = Q1 Q1^T``.
    """
    coef = _check_coef(coef)
    tt = _check_times(t)
    if tt.size != 1:
        raise ValueError("t must be a single time")
    U1, U2 = _check_factor(start, coef.size)
    fr = _Frame(coef, U1, U2, c)
    Q1, R, s = fr.basis(float(tt[0]))
    Q2 = scipy.linalg.solve_triangular(R, (fr.L2 * s).T, trans="T", lower=False).T
    return Start(np.ascontiguousarray(Q1[np.argsort(fr.order)]), np.ascontiguousarray(Q2))


def risk_from_G(coef, G):
    """``R = 1 - tr((G Lambda)^2) / tr(Lambda^2)`` for G of shape (..., r, r)."""
    lam = _check_coef(coef)
    G = np.asarray(G, dtype=np.float64)
    GL = G * lam  # (G Lambda)_ij = G_ij lambda_j
    return 1.0 - np.einsum("...ij,...ji->...", GL, GL) / (lam @ lam)


# ----------------------------------------------------------------------- integrators
_DM_SIG = "int64(float64[::1], float64[:, ::1], float64[:, ::1], float64[::1], float64, float64, float64, float64[:, :, ::1])"


@jit("UniTuple(float64[:, ::1], 2)(float64[::1], float64[:, ::1], float64, float64)")
def _dm_ef_jit(w, V, c, h):
    # E = e^{c A h} and F = E^2 - I = expm1(2 c A h) (no cancellation for small h).
    r = w.shape[0]
    Ve = np.empty((r, r))
    Vf = np.empty((r, r))
    for j in range(r):
        e = math.exp(c * w[j] * h)
        f = math.expm1(2.0 * c * w[j] * h)
        for i in range(r):
            Ve[i, j] = V[i, j] * e
            Vf[i, j] = V[i, j] * f
    VT = np.ascontiguousarray(V.T)
    return Ve @ VT, Vf @ VT


@jit("float64[:, ::1](float64[:, ::1], float64[:, ::1], float64[:, ::1])")
def _dm_map_jit(E, F, G):
    # Exact step of the Riccati flow (linearisation G = X Y^{-1}, Davison-Maki):
    # G(t+h) = E (I + G F)^{-1} G E.
    r = G.shape[0]
    Mm = G @ F
    for i in range(r):
        Mm[i, i] += 1.0
    Y = np.linalg.solve(Mm, G)
    Gn = E @ (Y @ E)
    return 0.5 * (Gn + Gn.T)


@jit(_DM_SIG)
def _dm_integrate_jit(w, V, G0, times, c, theta, tol, out):
    r = w.shape[0]
    amax = 0.0
    for i in range(r):
        amax = max(amax, abs(w[i]))
    h_max = theta / (c * amax) if amax > 0.0 else np.inf
    G = G0.copy()
    t = 0.0
    h_try = h_max
    nsteps = 0
    # E, F for the last step length h and h/2 (most steps have h = h_max)
    h1 = -1.0
    E1, F1 = _dm_ef_jit(w, V, c, 0.0)
    E2, F2 = E1, F1
    for k in range(times.shape[0]):
        T = times[k]
        while t < T:
            h = min(h_try, T - t)
            if h != h1:
                E1, F1 = _dm_ef_jit(w, V, c, h)
                if tol > 0.0:
                    E2, F2 = _dm_ef_jit(w, V, c, 0.5 * h)
                h1 = h
            if tol > 0.0:
                Gf = _dm_map_jit(E1, F1, G)
                Gh = _dm_map_jit(E2, F2, _dm_map_jit(E2, F2, G))
                err = 0.0
                for i in range(r):
                    for j in range(r):
                        err = max(err, abs(Gf[i, j] - Gh[i, j]))
                if err > tol and h > 1e-12 * max(T, 1.0):
                    h_try = 0.5 * h
                    continue
                G = Gh
            else:
                G = _dm_map_jit(E1, F1, G)
            t = t + h if h < T - t else T
            nsteps += 1
            if h >= h_try:
                h_try = min(2.0 * h_try, h_max)
        out[k] = G
    return nsteps


def _dm_ef_numpy(w, V, c, h):
    """NumPy twin of :func:`_dm_ef_jit`."""
    return (V * np.exp(c * w * h)) @ V.T, (V * np.expm1(2 * c * w * h)) @ V.T


def _dm_map_numpy(E, F, G):
    """NumPy twin of :func:`_dm_map_jit`."""
    Y = np.linalg.solve(np.eye(G.shape[0]) + G @ F, G)
    Gn = E @ (Y @ E)
    return 0.5 * (Gn + Gn.T)


def _dm_integrate_numpy(w, V, G0, times, c, theta, tol, out):
    """NumPy twin of :func:`_dm_integrate_jit` (same step-size logic and caching)."""
    amax = np.max(np.abs(w))
    h_max = theta / (c * amax) if amax > 0 else np.inf
    G, t, h_try, nsteps = G0.copy(), 0.0, h_max, 0
    h1 = -1.0
    for k, T in enumerate(times):
        while t < T:
            h = min(h_try, T - t)
            if h != h1:
                E1, F1 = _dm_ef_numpy(w, V, c, h)
                if tol > 0:
                    E2, F2 = _dm_ef_numpy(w, V, c, 0.5 * h)
                h1 = h
            if tol > 0:
                Gf = _dm_map_numpy(E1, F1, G)
                Gh = _dm_map_numpy(E2, F2, _dm_map_numpy(E2, F2, G))
                if np.max(np.abs(Gf - Gh)) > tol and h > 1e-12 * max(T, 1.0):
                    h_try = 0.5 * h
                    continue
                G = Gh
            else:
                G = _dm_map_numpy(E1, F1, G)
            t = t + h if h < T - t else T
            nsteps += 1
            if h >= h_try:
                h_try = min(2.0 * h_try, h_max)
        out[k] = G
    return nsteps


def integrate(A, times, G0, c=4.0, *, method="davison-maki", theta=8.0, tol=1e-12, return_steps=False):
    r"""Integrate ``dG/dt = c (A G + G A - 2 G A G)`` for a general symmetric ``A``.

    Methods
    -------
    ``"davison-maki"`` (default, Numba)
        Modified Davison-Maki scheme (Kenney & Leipnik 1985): from the linearisation
        ``G = X Y^{-1}``, ``d/dt [Y; X] = c [[-A, 2A], [0, A]] [Y; X]``, restarted at
        ``(X, Y) = (G, I)`` every step, one step of length ``h`` is *exact*:
        ``G <- E (I + G F)^{-1} G E`` with ``E = e^{c A h}``, ``F = expm1(2 c A h)``
        (both from one ``eigh`` of ``A``). Stiffness costs nothing; the step is capped by
        ``||c A h||_2 <= theta`` so ``I + G F`` stays well scaled, and error control by
        step doubling (one step of ``h`` against two of ``h/2``, max-norm difference
        ``<= tol``, else ``h`` is halved) bounds the amplified rounding. Cost
        ``O(r^3)`` per step, about ``c ||A|| T / theta`` steps.
    ``"eigen"``
        Rotate into the eigenbasis of ``A`` (there the equation is the diagonal one, with
        ``coef`` = eigenvalues of ``A``, which must then be >= 0) and use the overflow-free
        closed form of :func:`solve`. ``O(r^3)`` per time point, exact for all t.

    Parameters
    ----------
    A : array_like, shape (r, r)
        Symmetric (``|A - A^T| <= 1e-9 max|A|``), finite.
    times : array_like, shape (T,)
        Non-negative, non-decreasing.
    G0 : array_like, shape (r, r)
        Symmetric PSD with eigenvalues in [0, 1] (tolerance 1e-9).
    c : float
        Rate constant (4 for Stiefel SGD in ``t = lr * steps``).
    theta : float
        Step cap ``||c A h|| <= theta`` for ``"davison-maki"``.
    tol : float
        Step-doubling tolerance (absolute, max norm); 0 disables error control.
    return_steps : bool
        Also return the number of accepted steps (``"davison-maki"``).

    Returns
    -------
    ndarray, shape (T, r, r)
    """
    Am = _as_real_array(A, "A")
    if Am.ndim != 2 or Am.shape[0] != Am.shape[1] or Am.shape[0] == 0:
        raise ValueError(f"A must be a non-empty square matrix, got shape {Am.shape}")
    if not np.all(np.isfinite(Am)):
        raise ValueError("A must be finite (found nan or inf)")
    scale = max(1.0, float(np.max(np.abs(Am))))
    if np.max(np.abs(Am - Am.T)) > INPUT_TOL * scale:
        raise ValueError("A must be symmetric")
    r = Am.shape[0]
    t = _check_times(times)
    G, _, _ = _check_G0(G0, r)
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"c must be finite and > 0, got {c!r}")
    w, V = np.linalg.eigh(0.5 * (Am + Am.T))
    if method == "eigen":
        if w[0] < 0:
            raise ValueError("method='eigen' needs a positive semidefinite A (use 'davison-maki')")
        H0 = V.T @ G @ V
        Hs = solve(np.clip(w, 0, None), t, G0=0.5 * (H0 + H0.T), c=c)
        out = np.einsum("ij,tjk,lk->til", V, Hs, V)
        return (out, 0) if return_steps else out
    if method != "davison-maki":
        raise ValueError(f"method must be 'davison-maki' or 'eigen', got {method!r}")
    if not (np.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be finite and > 0, got {theta!r}")
    out = np.empty((t.size, r, r))
    n = _dm_integrate_jit(
        np.ascontiguousarray(w), np.ascontiguousarray(V), np.ascontiguousarray(G), t,
        float(c), float(theta), float(tol), out,
    )
    return (out, int(n)) if return_steps else out


# ------------------------------------------------------------- comparison systems
def logistic(coef, times, g0, c=4.0):
    r"""Diagonal comparison system: ``dg/dt = 2 c lambda g (1 - g)`` (``8 lambda`` for c = 4).

    Closed form ``g(t) = 1 / (1 + ((1 - g0) / g0) e^{-2 c lambda t})`` (overflow-free;
    ``g0 = 0`` stays 0). This is the Riccati flow of a diagonal ``G0``:
    ``Phi_t(diag(g0)) = diag(g(t))``. Broadcasts ``times[:, None]`` against ``coef`` and
    ``g0`` (scalar or per coordinate).

    Returns
    -------
    ndarray, shape (T,) + broadcast(coef, g0).shape
    """
    lam = np.asarray(coef, dtype=np.float64)
    g0 = np.asarray(g0, dtype=np.float64)
    if np.any(~np.isfinite(g0)) or np.any((g0 < 0) | (g0 > 1)):
        raise ValueError("g0 must lie in [0, 1]")
    t = _check_times(times).reshape((-1,) + (1,) * max(lam.ndim, g0.ndim))
    with np.errstate(divide="ignore"):
        odds = np.where(g0 > 0, (1.0 - g0) / np.where(g0 > 0, g0, 1.0), np.inf)
    x = -2.0 * c * lam * t
    with np.errstate(over="ignore", invalid="ignore"):
        z = odds * np.exp(x)
        g = np.where(g0 > 0, 1.0 / (1.0 + np.where(np.isnan(z), 0.0, z)), 0.0)
    return g


class Bounds(NamedTuple):
    """Loewner sandwich of the true G by diagonal comparison systems (see comparison_bounds)."""

    lower: np.ndarray  # (T, r) diagonal of the lower comparison
    upper: np.ndarray  # (T, r) diagonal of the upper comparison
    risk_lower: np.ndarray  # (T,) lower bound on the risk
    risk_upper: np.ndarray  # (T,) upper bound on the risk
    mu_min: float
    mu_max: float


def comparison_bounds(coef, times, factor=None, G0=None, *, complement=None, c=4.0):
    r"""Diagonal comparison systems that sandwich ``G(t)`` in the Loewner order.

    Statement (checked in the tests). The flow map ``Phi_t`` is monotone:
    ``Phi_t(G0)^{-1} = E^{-1} G0^{-1} E^{-1} + I - E^{-2}`` (``E = e^{c Lambda t}``) for
    invertible ``G0``, and inversion reverses the Loewner order, so
    ``G0 <= G0'  =>  G(t) <= G'(t)`` (by continuity also for singular ones). A diagonal
    ``G0`` evolves coordinate-wise by the logistic equation. Hence, with
    ``mu_min I <= G0 <= mu_max I`` (extreme eigenvalues of ``G0``),

    .. math:: \mathrm{diag}(g_j(t;\mu_{\min})) \preceq G(t) \preceq \mathrm{diag}(g_j(t;\mu_{\max}))

    for all ``t >= 0``, ``g_j(t; g0)`` the logistic of :func:`logistic`. For
    ``0 <= X <= Y``, ``tr((X Lambda)^2) <= tr((Y Lambda)^2)``, so the risk satisfies
    ``1 - sum lambda_j^2 g_j(t; mu_max)^2 / sum lambda^2 <= R(t) <=
    1 - sum lambda_j^2 g_j(t; mu_min)^2 / sum lambda^2``; moreover a rank-N ``G`` with
    ``G <= I`` has ``R >= 1 - sum_{j<=N} lambda_(j)^2 / sum lambda^2`` (width floor), and
    ``risk_lower`` is the larger of the two. When ``N < r`` the start is singular,
    ``mu_min = 0`` and the lower comparison is trivial: no non-zero diagonal matrix lies
    below a generic rank-deficient ``G0``. The paper's heuristic ``g_j(0) = N/d`` (the
    typical diagonal of ``G0``) is *not* a bound.

    Returns
    -------
    Bounds
    """
    coef = _check_coef(coef)
    t = _check_times(times)
    U1, _ = _start_from_inputs(coef, factor, G0, complement)
    r, N = U1.shape
    sv = np.linalg.svd(U1, compute_uv=False)
    mu_max = float(min(sv[0] ** 2, 1.0))
    mu_min = float(min(sv[-1] ** 2, 1.0)) if N >= r else 0.0
    lo = logistic(coef, t, mu_min, c)
    hi = logistic(coef, t, mu_max, c)
    l2 = coef**2
    den = l2.sum()
    floor = 1.0 - np.sort(l2)[::-1][: min(N, r)].sum() / den
    risk_lo = np.maximum(1.0 - (hi**2 @ l2) / den, floor)
    risk_hi = 1.0 - (lo**2 @ l2) / den
    return Bounds(lo, hi, risk_lo, risk_hi, mu_min, mu_max)


@jit("void(float64[::1], int64[::1], int64[::1], float64[:, ::1], float64[::1], float64, float64[:, :, ::1])")
def _comparison_risk_kernel(alpha, r, width, g0, times, c, out):
    # For each configuration k: lambda_j = j^-alpha/||.||, logistic g_j(t) from the three
    # starts g0[k] = (central N/d, upper edge, lower edge); risk = 1 - sum l^2 g^2 / sum l^2.
    nconf = alpha.shape[0]
    nt = times.shape[0]
    for k in range(nconf):
        rk = r[k]
        Nk = width[k]
        l2 = np.empty(rk)
        z2 = 0.0
        for j in range(rk):
            l2[j] = float(j + 1) ** (-2.0 * alpha[k])
            z2 += l2[j]
        top = 0.0
        for j in range(rk):
            l2[j] /= z2
            if j < Nk:
                top += l2[j]  # width floor: the N largest lambda^2 are the first N
        floor = 1.0 - top
        rate = np.empty(rk)
        for j in range(rk):
            rate[j] = -2.0 * c * math.sqrt(l2[j])
        for q in range(3):
            g0q = g0[k, q]
            jmax = min(Nk, rk) if q == 0 else rk  # prediction: only the top N are learned
            for i in range(nt):
                acc = 0.0
                if g0q > 0.0:
                    odds = (1.0 - g0q) / g0q
                    ti = times[i]
                    for j in range(jmax):
                        g = 1.0 / (1.0 + odds * math.exp(rate[j] * ti))
                        acc += l2[j] * g * g
                risk = 1.0 - acc
                if q == 1:  # upper comparison gives the lower risk bound
                    risk = max(risk, floor)
                out[k, q, i] = risk


def _comparison_risk_numpy(alpha, r, width, g0, times, c, out):
    """NumPy twin of :func:`_comparison_risk_kernel`."""
    for k in range(alpha.size):
        j = np.arange(1, r[k] + 1, dtype=np.float64)
        l2 = j ** (-2.0 * alpha[k])
        l2 /= l2.sum()
        floor = 1.0 - l2[: min(width[k], r[k])].sum()
        lam = np.sqrt(l2)
        for q in range(3):
            g = logistic(lam, times, g0[k, q], c)
            if q == 0:
                g[:, width[k]:] = 0.0
            risk = 1.0 - (g**2) @ l2
            out[k, q] = np.maximum(risk, floor) if q == 1 else risk


class ComparisonRisk(NamedTuple):
    """Risk curves of the diagonal comparison systems for many configurations."""

    prediction: np.ndarray  # (K, T) decoupled prediction, g_j(0) = N/d, top-N features
    lower: np.ndarray  # (K, T) from g_j(0) = upper MP edge, floored by the width floor
    upper: np.ndarray  # (K, T) from g_j(0) = lower MP edge (0 when N < r)
    r: np.ndarray  # (K,) r = ceil(d^beta)
    g0: np.ndarray  # (K, 3) the starts (central, upper edge, lower edge)


def comparison_risk(alpha, beta, d, width, times, c=4.0):
    r"""Risk curves of the diagonal comparison systems, vectorised over configurations.

    For each configuration (broadcast of ``alpha, beta, d, width``): ``r = ceil(d^beta)``,
    ``lambda_j = j^-alpha / ||.||_2`` and three logistic systems
    ``g_j(t) = 1 / (1 + ((1 - g0)/g0) e^{-2 c lambda_j t})``:

    * ``prediction``: ``g0 = N/d`` (typical diagonal of ``G0`` at a Haar start) for the
      top ``N`` features, the rest never learned: the decoupled (additive-model) curve of
      the papers. A heuristic, not a bound.
    * ``lower``: ``g0 = min(1, (sqrt(N) + sqrt(r))^2 / d)``, the asymptotic top edge of
      the spectrum of ``G0 = U1 U1^T`` (Marchenko-Pastur for ``U1 ~ N(0, 1/d)``), maximised
      with the width floor. It is a lower bound on the risk for every start whose
      ``G0 <= g0 I`` (true with high probability up to ``1 + o(1)``;
      :func:`comparison_bounds` gives the certified version for a given start).
    * ``upper``: ``g0 = (sqrt(N) - sqrt(r))_+^2 / d`` (bottom edge; 0 when ``N <= r``
      where the lower comparison is trivial), an upper bound on the risk in the same
      sense.

    Returns
    -------
    ComparisonRisk
    """
    a, b, dd, w = np.broadcast_arrays(
        np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64),
        np.asarray(d, dtype=np.float64), np.asarray(width, dtype=np.float64),
    )
    a, b, dd, w = (np.ascontiguousarray(x.ravel()) for x in (a, b, dd, w))
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError("alpha must be finite and >= 0")
    if np.any(~np.isfinite(b)) or np.any((b < 0) | (b >= 1)):
        raise ValueError("beta must lie in [0, 1)")
    if np.any(~np.isfinite(dd)) or np.any(dd < 1) or np.any(dd != np.round(dd)):
        raise ValueError("d must be positive integers")
    if np.any(~np.isfinite(w)) or np.any(w < 1) or np.any(w != np.round(w)) or np.any(w > dd):
        raise ValueError("width must be positive integers <= d")
    t = _check_times(times)
    r = np.ceil(dd**b - 1e-9).astype(np.int64)
    r = np.maximum(r, 1)
    wi = w.astype(np.int64)
    g0 = np.empty((a.size, 3))
    g0[:, 0] = w / dd
    g0[:, 1] = np.minimum(1.0, (np.sqrt(w) + np.sqrt(r)) ** 2 / dd)
    g0[:, 2] = np.where(w > r, (np.sqrt(w) - np.sqrt(r)) ** 2 / dd, 0.0)
    out = np.empty((a.size, 3, t.size))
    _comparison_risk_kernel(a, r, wi, g0, t, float(c), out)
    return ComparisonRisk(out[:, 0], out[:, 1], out[:, 2], r, g0)
