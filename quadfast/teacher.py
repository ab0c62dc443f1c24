"""The power-law quadratic teacher (MODEL.md §1).

    f*(x) = sum_j lambda_j He2(<theta_j, x>) = <x x^T - I, M*>,   M* = Theta diag(lambda) Theta^T,
    y = f*(x) + sigma * xi,   x ~ N(0, I_d),  xi ~ N(0, 1),  He2(z) = z^2 - 1.

In the canonical frame (``directions=None``) theta_j = e_j, so a label costs O(r).
Because a Haar-random student start makes the law of the whole run rotation invariant,
the canonical frame loses nothing; explicit directions are supported at O(d r) per sample.
"""
from __future__ import annotations

import math

import numpy as np

from . import _validate as V


def power_law_coef(r: int, alpha: float) -> np.ndarray:
    """lambda_j = j^-alpha / ||(k^-alpha)_{k<=r}||_2, j = 1..r  (so ||lambda||_2 = 1)."""
    r = V.positive_int(r, "r")
    alpha = V.real_float(alpha, "alpha")
    if alpha < 0:
        raise ValueError(f"alpha: expected a decay exponent >= 0 (lambda_j ~ j^-alpha), got {alpha}")
    lam = np.arange(1, r + 1, dtype=np.float64) ** (-alpha)
    return lam / np.linalg.norm(lam)


def width_of(d: int, beta: float) -> int:
    """r = ceil(d^beta), guarded against rounding (e.g. 4096^0.5 = 64 exactly)."""
    x = d**beta
    rx = round(x)
    return int(rx) if abs(x - rx) <= 1e-9 * max(1.0, x) else int(math.ceil(x))


class Teacher:
    """Quadratic teacher with non-negative coefficients and orthonormal directions.

    Parameters
    ----------
    coef : array_like, shape (r,)
        lambda_1..lambda_r, finite and >= 0 (not renormalised).
    d : int, optional
        Input dimension; required for the canonical frame (``directions=None``).
    directions : array_like, shape (d, r), optional
        Orthonormal columns theta_j.  ``None`` means the canonical frame theta_j = e_j.
    noise : float
        sigma >= 0; labels are f*(x) + sigma * xi.

    Notes
    -----
    Samples drawn by :meth:`sample` come from quadfast's counter-based generator: with
    the same seed they are exactly the samples that ``StiefelSGD(..., batch=B, seed=seed).run``
    draws in its kernel, in order (sample s = stream s).
    """

    def __init__(self, coef, d=None, directions=None, noise: float = 0.0):
        coef = V.float_array(coef, "coef", 1)
        if coef.size == 0:
            raise ValueError("coef: expected at least one coefficient, got an empty array")
        if np.any(coef < 0):
            raise ValueError(f"coef: expected non-negative coefficients, found {coef.min():g}")
        r = coef.size
        if directions is not None:
            dirs = V.float_array(directions, "directions", 2, shape=(None, r))
            if d is not None and V.positive_int(d, "d") != dirs.shape[0]:
                raise ValueError(f"d: expected d = directions.shape[0] = {dirs.shape[0]}, got {d}")
            d = dirs.shape[0]
            V.check_orthonormal(dirs, "directions", 1e-10)
        else:
            if d is None:
                raise ValueError("d: required when directions is None (canonical frame)")
            d = V.positive_int(d, "d")
            dirs = None
        if r > d:
            raise ValueError(f"coef: expected at most d = {d} coefficients, got r = {r}")
        self.coef = coef
        self.d = int(d)
        self.r = int(r)
        self.directions = dirs
        self.noise = V.positive_float(noise, "noise", allow_zero=True)

    @classmethod
    def power_law(cls, d: int, beta: float, alpha: float, noise: float = 0.0) -> "Teacher":
        """Canonical-frame teacher with r = ceil(d^beta), lambda_j ~ j^-alpha, ||lambda||_2 = 1."""
        d = V.positive_int(d, "d")
        beta = V.real_float(beta, "beta")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta: expected 0 <= beta < 1, got {beta}")
        return cls(power_law_coef(width_of(d, beta), alpha), d=d, noise=noise)

    # ------------------------------------------------------------------ basics
    @property
    def canonical(self) -> bool:
        return self.directions is None

    def theta(self) -> np.ndarray:
        """Theta (d x r) as a dense array (the canonical frame materialised)."""
        if self.directions is not None:
            return self.directions
        th = np.zeros((self.d, self.r))
        th[np.arange(self.r), np.arange(self.r)] = 1.0
        return th

    def project(self, W: np.ndarray) -> np.ndarray:
        """U = Theta^T W (r x N), a new float64 array (never a view of W, which kernels
        update in place): the first r rows of W in the canonical frame."""
        if self.directions is None:
            return np.array(W[: self.r], dtype=np.float64, copy=True)
        return self.directions.T @ np.asarray(W, dtype=np.float64)

    def label(self, X) -> np.ndarray:
        """Noiseless labels f*(x) = sum_j lambda_j (<theta_j, x>^2 - 1) for rows x of X."""
        X = V.float_array(X, "X", 2, shape=(None, self.d))
        P = X[:, : self.r] if self.directions is None else X @ self.directions
        return (P * P - 1.0) @ self.coef

    def sample(self, n: int, seed: int = 0, dtype=np.float64, start: int = 0):
        """Draw n samples (rows of X) and their labels y = f*(x) + sigma xi.

        Sample s (s = start .. start + n - 1) is stream s of the counter-based generator
        keyed by ``seed``; its noise deviate xi is element d of that stream.
        """
        from ._ext import core as _core

        n = V.positive_int(n, "n")
        seed = V.seed_int(seed)
        start = V.positive_int(start, "start", minimum=0)
        dt = V.as_dtype(dtype)
        X = np.empty((n, self.d), dtype=dt)
        _core.fill_normals(X, seed, start)
        y = self.label(X)
        if self.noise:
            xi = np.array([_core.normal_at(seed, start + s, self.d) for s in range(n)])
            y = y + self.noise * xi
        return X, y.astype(dt)

    def risk_of_overlap(self, U: np.ndarray) -> float:
        """R = 1 - tr((G Lambda)^2) / tr(Lambda^2) with G = U U^T (MODEL.md §1).

        tr((G Lambda)^2) = tr((U U^T Lambda)^2) = ||U^T Lambda U||_F^2, evaluated on the
        r x r or the N x N side, whichever is smaller: O(r N min(r, N)) time and
        min(r, N)^2 memory."""
        U = np.asarray(U, dtype=np.float64)
        r, n = U.shape
        if r <= n:
            M = (U @ U.T) * self.coef[None, :]  # G Lambda
            num = float(np.einsum("ij,ji->", M, M))
        else:
            S = U.T @ (self.coef[:, None] * U)  # U^T Lambda U
            num = float(np.vdot(S, S))
        return 1.0 - num / float(np.sum(self.coef**2))

    def __repr__(self) -> str:
        frame = "canonical" if self.canonical else "explicit"
        return f"Teacher(d={self.d}, r={self.r}, frame={frame}, noise={self.noise:g})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Teacher):
            return NotImplemented
        same_dirs = (self.directions is None and other.directions is None) or (
            self.directions is not None and other.directions is not None and np.array_equal(self.directions, other.directions)
        )
        return self.d == other.d and self.noise == other.noise and np.array_equal(self.coef, other.coef) and same_dirs

    __hash__ = None
