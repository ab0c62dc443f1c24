"""Phase II of the stage-wise algorithm (seed 002): least-squares fit of the radial part.

After Stiefel SGD (phase I, :class:`quadfast.StiefelSGD`) the student ``W B W^T`` with a
symmetric ``B`` (N x N) is fitted by least squares on fresh samples.  The student is linear
in ``B``: ``f(x) = <z z^T - I, B>`` with ``z = W^T x`` (MODEL.md §1), so

    B = argmin_{B = B^T} sum_s (<z_s z_s^T - I, B> - y_s)^2.

The normal equations ``A(B) = b`` with ``A(B) = (1/2n) sum_s <Phi_s, B> Phi_s`` and
``b = (1/2n) sum_s y_s Phi_s``, ``Phi_s = z_s z_s^T - I``, are solved by conjugate gradients
in the space of symmetric N x N matrices with the Frobenius inner product, matrix-free:

    f_s = z_s^T B z_s - tr B            (row sums of (Z B) * Z: one GEMM)
    A(B) = (Z^T diag(f) Z - (sum_s f_s) I) / 2n      (one GEMM)

O(n N^2) per iteration and O(n N) memory, never the n x N(N+1)/2 design.  The start is the
moment estimator ``b``: for ``W^T W = I``, ``E[y (z z^T - I)] = 2 W^T M* W`` and
``E[<z z^T - I, B> (z z^T - I)] = 2 B`` for symmetric B (both from
``E[<x x^T - I, S> x x^T] = 2 S``, MODEL.md §1), so ``A -> identity`` and
``b -> W^T M* W``, the population optimum, as n grows: CG starts close and converges in a
few tens of iterations (its condition number is about ((1 + sqrt(p/n)) / (1 - sqrt(p/n)))^2,
``p = N(N+1)/2``).

Why the operator runs in NumPy: an iteration is two dense GEMMs (n x N by N x N) and one
O(nN) pass; NumPy hands the GEMMs to the same optimised BLAS (dgemm) that C++ would call
(Eigen's own GEMM is not faster), and the Python overhead per iteration (tens of
microseconds) is nothing next to the GEMMs (about 0.4 s at n = 1e5, N = 256 on one core).  The second product is symmetric and runs as one
dsyrk call (half the flops of a GEMM; see _Operator).  What would
be slow in Python is the sampling: fresh samples are drawn and projected in C++
(``quadfast/finetune.hpp``), in chunks of 256 samples, so the n x d matrix never exists.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _threads
from . import _validate as V

__all__ = ["finetune", "FinetuneResult", "radial_risk"]


@dataclasses.dataclass
class FinetuneResult:
    """Result of :func:`finetune`.

    B : (N, N) least-squares symmetric matrix; the fitted student is ``W B W^T``.
    risk : ||W B W^T - M*||_F^2 / ||M*||_F^2 (exact population risk, MODEL.md §1).
    Omega : (N, N) ``B_+^{1/2}``: symmetric square root of the PSD part of B (negative
        eigenvalues set to 0).  The fine-tuned weights are ``W @ Omega`` (seed 002's
        ``W_final = W Omega``), with student ``W Omega Omega^T W^T``.
    risk_psd : the risk of ``W Omega Omega^T W^T = W B_+ W^T``.
    risk_start : the risk of the moment estimator (the CG start).
    iterations : CG iterations.
    residual : final ||A(B) - b||_F / ||b||_F of the normal equations.
    converged : residual <= tol.
    n : samples used.
    sample_seed : key of the counter-based generator for the fresh samples (None for user X).
    """

    B: np.ndarray
    risk: float
    Omega: np.ndarray
    risk_psd: float
    risk_start: float
    iterations: int
    residual: float
    converged: bool
    n: int
    sample_seed: int | None


def radial_risk(teacher, W, B) -> float:
    """||W B W^T - M*||_F^2 / ||M*||_F^2 without d x d matrices (MODEL.md §1).

    With C = W^T W (N x N), U = Theta^T W (r x N), Lambda = diag(lambda), Gt = Theta^T Theta:
    ``||W B W^T||^2 = tr(B C B C)``, ``<W B W^T, M*> = <B, U^T Lambda U>``,
    ``||M*||^2 = tr(Lambda Gt Lambda Gt)`` (= ||lambda||^2 for orthonormal Theta).
    Cost O(d N^2 + r N^2).  Exact for any W (orthonormality is not assumed).
    """
    W = np.asarray(W, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    C = W.T @ W
    U = teacher.project(W)
    lam = teacher.coef
    if teacher.directions is None:
        mm = float(np.sum(lam * lam))
    else:
        Gt = teacher.directions.T @ teacher.directions
        LG = lam[:, None] * Gt
        mm = float(np.sum(LG * LG.T))
    BC = B @ C
    num = float(np.sum(BC * BC.T)) - 2.0 * float(np.sum(B * (U.T @ (lam[:, None] * U)))) + mm
    return max(num, 0.0) / mm


def _sample_seed(sim_seed: int, seed: int) -> int:
    # A key for the phase-II samples derived from (the run's seed, seed): the run's samples
    # are streams of key sim.seed; with a different 64-bit key, a collision of generator
    # states needs mix(key) - mix(sim.seed) = (s - s') * golden mod 2^64 for some of the
    # ~n * steps stream pairs: probability about n * steps / 2^64.
    return int(np.random.SeedSequence((sim_seed, seed, 0xF17E7E)).generate_state(1, dtype=np.uint64)[0])


def finetune(sim, n: int | None = None, X=None, y=None, seed: int = 0, *, tol: float = 1e-6, maxiter: int = 500,
             threads: int | None = None) -> FinetuneResult:
    """Least-squares fine-tune of the radial part after Stiefel SGD (seed 002, phase II).

    Parameters
    ----------
    sim : StiefelSGD
        The phase-I simulator; its current ``W`` and teacher are used (W is not modified).
    n : int, optional
        Number of fresh samples from the teacher (with its noise).  Default
        ``2 N (N + 1)`` (four samples per unknown).  Not allowed together with ``X``.
    X, y : array_like (n, d) and (n,), optional
        Your own samples and labels instead of fresh ones.
    seed : int
        Fresh sample s is stream s of the counter-based generator keyed by a 64-bit key
        derived from ``(sim.seed, seed)`` (``FinetuneResult.sample_seed``), so the samples
        are independent of those of the SGD run.
    tol : float
        CG stops when ||A(B) - b||_F <= tol ||b||_F (normal equations, module doc).  The
        default 1e-6 puts the solver error (about cond(A) * tol, cond(A) ~ 10) far below
        the statistical error of B, of relative size ~ sqrt(N(N+1) / 2n).
    maxiter : int
        Most CG iterations.
    threads : int, optional
        Threads of the sampling kernel (``None``: the environment, then the CPUs).  The
        samples are bit-identical for any thread count.  The GEMMs use NumPy's BLAS threads.

    Returns
    -------
    FinetuneResult

    Notes
    -----
    Memory is O(n N) (Z = X W, n x N float64, and two work arrays of that size); time is
    O(n d N) to sample and project plus O(n N^2) per CG iteration.  With fewer samples
    than unknowns (n < N(N+1)/2) the problem is under-determined: CG then returns the
    solution closest (in Frobenius norm) to the moment estimator.
    """
    from ._ext import core as _core
    from .stiefel import StiefelSGD

    if not isinstance(sim, StiefelSGD):
        raise TypeError(f"sim: expected a quadfast.StiefelSGD, got {type(sim).__name__}")
    teacher = sim.teacher
    W = np.ascontiguousarray(sim.W, dtype=np.float64)
    d, N = W.shape
    seed = V.seed_int(seed)
    tol = V.positive_float(tol, "tol")
    maxiter = V.positive_int(maxiter, "maxiter", minimum=0)
    nthreads = _threads.resolve(threads)
    if X is not None or y is not None:
        if X is None or y is None:
            raise ValueError("X, y: give both your samples X (n, d) and their labels y (n,), or neither")
        if n is not None:
            raise ValueError("n: give either n (fresh samples) or your own X, y, not both")
        Xa = V.float_array(X, "X", 2, shape=(None, d))
        if Xa.shape[0] < 1:
            raise ValueError("X: expected at least one sample")
        ya = V.float_array(y, "y", 1, shape=(Xa.shape[0],))
        n = Xa.shape[0]
        Z = Xa @ W
        labels = ya
        sample_seed = None
    else:
        n = 2 * N * (N + 1) if n is None else V.positive_int(n, "n")
        Z = np.empty((n, N))
        labels = np.empty(n)
        sample_seed = _sample_seed(sim.seed, seed)
        coef = np.ascontiguousarray(teacher.coef, dtype=np.float64)
        dirs = None if teacher.directions is None else np.ascontiguousarray(teacher.directions, dtype=np.float64)
        _core.finetune_project(W, coef, dirs, teacher.noise, sample_seed, 0, Z, labels, nthreads)

    B, it, res = _solve(Z, labels, tol, maxiter)
    B0 = _moment(Z, labels)
    ev, Q = np.linalg.eigh(B)
    Omega = (Q * np.sqrt(np.clip(ev, 0.0, None))) @ Q.T
    Bp = (Q * np.clip(ev, 0.0, None)) @ Q.T
    return FinetuneResult(B=B, risk=radial_risk(teacher, W, B), Omega=Omega, risk_psd=radial_risk(teacher, W, Bp),
                          risk_start=radial_risk(teacher, W, B0), iterations=it, residual=res,
                          converged=bool(res <= tol), n=int(n), sample_seed=sample_seed)


def _sym(A):
    return 0.5 * (A + A.T)


def _moment(Z, y):
    """b = (1/2n) sum_s y_s (z_s z_s^T - I), the moment estimator of W^T M* W."""
    n, N = Z.shape
    return _sym(Z.T @ (y[:, None] * Z) - np.sum(y) * np.eye(N)) / (2.0 * n)


class _Operator:
    """A(B) = (1/2n) (Z^T diag(f) Z - (sum f) I), f_s = z_s^T B z_s - tr B; work arrays reused.

    Z^T diag(f) Z is symmetric: with a shift c = max(0, -min f) it is
    Y^T Y - c Z^T Z, Y = diag(sqrt(f + c)) Z, one symmetric rank-n update (dsyrk, half the
    flops of a GEMM) and the Gram matrix Z^T Z computed once.  The shift costs about
    log10(1 + c / mean|f|) digits (c is set by the most negative f_s, a few times its
    typical size), far below what CG needs.
    """

    def __init__(self, Z):
        from scipy.linalg import blas

        self.Z = Z
        self.n, self.N = Z.shape
        self.ZB = np.empty_like(Z)
        self.f = np.empty(self.n)
        self.gram = np.triu(blas.dsyrk(1.0, Z.T, trans=0, lower=0))  # upper triangle of Z^T Z

    def __call__(self, B):
        from scipy.linalg import blas

        Z, Y, f = self.Z, self.ZB, self.f
        np.matmul(Z, B, out=Y)
        np.einsum("ij,ij->i", Y, Z, out=f)
        f -= np.trace(B)
        c = max(0.0, -float(f.min()))
        np.multiply(Z, np.sqrt(f + c)[:, None], out=Y)
        out = np.triu(blas.dsyrk(1.0, Y.T, trans=0, lower=0))  # Y.T is Fortran N x n: no copy
        if c:
            out -= c * self.gram
        out += np.triu(out, 1).T
        out[np.diag_indices(self.N)] -= np.sum(f)
        out /= 2.0 * self.n
        return out


def _solve(Z, y, tol, maxiter):
    """CG on the symmetric normal equations, started from the moment estimator."""
    A = _Operator(Z)
    b = _moment(Z, y)
    bnorm = np.sqrt(np.sum(b * b))
    if bnorm == 0.0:
        return np.zeros_like(b), 0, 0.0
    B = b.copy()
    r = b - A(B)
    rr = float(np.sum(r * r))
    p = r.copy()
    it = 0
    while np.sqrt(rr) > tol * bnorm and it < maxiter:
        Ap = A(p)
        pAp = float(np.sum(p * Ap))
        if not pAp > 0.0:  # p in the null space (n < N(N+1)/2) or breakdown: stop
            break
        a = rr / pAp
        B += a * p
        r -= a * Ap
        rr_new = float(np.sum(r * r))
        p = r + (rr_new / rr) * p
        rr = rr_new
        it += 1
    # report the true residual, not the recursively updated one
    rt = b - A(B)
    return B, it, float(np.sqrt(np.sum(rt * rt)) / bnorm)
