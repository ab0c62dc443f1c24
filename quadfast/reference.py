"""Plain NumPy references: the obvious implementations that quadfast's kernels are checked
against and benchmarked with.  Nothing here is fast on purpose.

Conventions are those of MODEL.md §1-2: x ~ N(0, I_d) rows, f(x; W) = ||W^T x||^2 - N,
loss e^2 / 2 with e = f - y, time t = lr * steps.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "teacher_labels", "euclidean_gradient", "riemannian_gradient", "polar", "stiefel_step", "stiefel_sgd",
    "rank_one_step", "run_rank_one", "run_reference", "population_overlap", "population_risk",
    "euclid_output", "euclid_gradient", "euclid_step", "euclid_sgd", "euclid_risk_dense", "run_euclid_reference",
    "finetune_design", "finetune_lstsq", "finetune_risk_dense", "qplr_sgd",
]


def teacher_labels(X: np.ndarray, theta: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """f*(x) = sum_j lambda_j ((theta_j . x)^2 - 1), with an explicit Theta (d x r)."""
    P = X @ theta
    return (P**2 - 1.0) @ coef


def euclidean_gradient(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of mean_b e_b^2 / 2: (2 / B) sum_b e_b x_b z_b^T, z_b = W^T x_b."""
    Z = X @ W
    e = np.sum(Z**2, axis=1) - W.shape[1] - y
    return (2.0 / X.shape[0]) * X.T @ (e[:, None] * Z)


def riemannian_gradient(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Projection of the Euclidean gradient onto the tangent space at W (embedded metric):
    grad - W sym(W^T grad)."""
    G = euclidean_gradient(W, X, y)
    S = W.T @ G
    return G - W @ (0.5 * (S + S.T))


def polar(A: np.ndarray) -> np.ndarray:
    """A (A^T A)^{-1/2} via the symmetric eigendecomposition of A^T A."""
    ev, Q = np.linalg.eigh(A.T @ A)
    return A @ (Q / np.sqrt(ev)) @ Q.T


def stiefel_step(W: np.ndarray, X: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """One Riemannian SGD step on a batch (rows of X) followed by the polar retraction."""
    return polar(W - lr * riemannian_gradient(W, X, y))


def stiefel_sgd(W0: np.ndarray, X: np.ndarray, y: np.ndarray, lr: float, batch: int = 1) -> np.ndarray:
    """Run len(X) / batch reference steps on the given samples; returns the final W."""
    W = np.array(W0, dtype=np.float64)
    for k in range(X.shape[0] // batch):
        sl = slice(k * batch, (k + 1) * batch)
        W = stiefel_step(W, X[sl], y[sl], lr)
    return W


def rank_one_step(W: np.ndarray, x: np.ndarray, y: float, lr: float) -> None:
    """The closed-form rank-one step of MODEL.md §2 written in NumPy, in place.

    z = W^T x, e = ||z||^2 - N - y, ||u||^2 = 4 lr^2 e^2 (||x||^2 - ||z||^2),
    s = ||u||^2 ||z||^2, c = ((1 + s)^{-1/2} - 1) / ||z||^2,
    W += (u (1 + c ||z||^2) + c p) z^T with p = W z, u = -2 lr e (x - p).
    """
    z = W.T @ x
    zz = z @ z
    e = zz - W.shape[1] - y
    g = -2.0 * lr * e
    s = g * g * (x @ x - zz) * zz
    a = (1.0 + s) ** -0.5
    c = np.expm1(-0.5 * np.log1p(s)) / zz if zz > 0 else 0.0
    p = W @ z
    W += np.outer(g * a * x + (c - g * a) * p, z)


def run_rank_one(W: np.ndarray, teacher, steps: int, lr: float, rng: np.random.Generator) -> None:
    """``steps`` NumPy rank-one steps with NumPy sampling (the benchmark baseline)."""
    theta = teacher.theta() if teacher.directions is not None else None
    r = teacher.r
    for _ in range(steps):
        x = rng.standard_normal(W.shape[0])
        P = x[:r] if theta is None else x @ theta
        y = (P * P - 1.0) @ teacher.coef
        rank_one_step(W, x, y, lr)


def run_reference(W: np.ndarray, teacher, steps: int, lr: float, rng: np.random.Generator, batch: int = 1) -> np.ndarray:
    """``steps`` reference steps (explicit Theta, projected gradient, eigh polar) with NumPy sampling."""
    theta = teacher.theta()
    for _ in range(steps):
        X = rng.standard_normal((batch, W.shape[0]))
        W = stiefel_step(W, X, teacher_labels(X, theta, teacher.coef), lr)
    return W


def population_overlap(coef: np.ndarray, U1: np.ndarray, times) -> np.ndarray:
    """G(t) of the population flow dG/dt = 4 (Lambda G + G Lambda - 2 G Lambda G) from the
    Oja closed form (MODEL.md §4), evaluated directly.  A reference for moderate t only:
    C has condition number ~exp(8 lambda_1 t), so the result loses about eps times that
    (1e-6 at lambda_1 t = 4); :mod:`quadfast.riccati` evaluates the same closed form
    exactly for every t:

        W(t) = e^{4 M* t} W0 (W0^T e^{8 M* t} W0)^{-1/2},  U(t) = E U1 C^{-1/2},
        C = I + U1^T (E^2 - I) U1,  E = diag(exp(4 lambda t)),  G = U U^T.
    """
    coef = np.asarray(coef, dtype=np.float64)
    out = []
    for t in np.atleast_1d(times):
        E = np.exp(4.0 * coef * t)
        C = np.eye(U1.shape[1]) + U1.T @ ((E**2 - 1.0)[:, None] * U1)
        ev, Q = np.linalg.eigh(C)
        U = (E[:, None] * U1) @ (Q / np.sqrt(ev)) @ Q.T
        out.append(U @ U.T)
    return np.array(out)


def population_risk(coef: np.ndarray, U1: np.ndarray, times) -> np.ndarray:
    """Risk 1 - tr((G Lambda)^2) / tr(Lambda^2) along :func:`population_overlap`."""
    coef = np.asarray(coef, dtype=np.float64)
    G = population_overlap(coef, U1, times)
    GL = G * coef[None, None, :]
    return 1.0 - np.einsum("tij,tji->t", GL, GL) / np.sum(coef**2)


# ---------------------------------------------------------------------------- Euclidean student
def euclid_output(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """f(x; W) = sum_i ||w_i||^2 He2(<w_i, x> / ||w_i||) for rows x of X, term by term
    (a neuron with w_i = 0 contributes 0)."""
    out = np.zeros(X.shape[0])
    for i in range(W.shape[1]):
        w = W[:, i]
        nw = np.linalg.norm(w)
        if nw > 0:
            out += nw**2 * ((X @ w / nw) ** 2 - 1.0)
    return out


def euclid_gradient(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of mean_b e_b^2 / 2 for f = ||W^T x||^2 - ||W||_F^2:
    (1 / B) sum_b e_b (2 x_b x_b^T W - 2 W)."""
    e = euclid_output(W, X) - y
    grad = np.zeros_like(W)
    for b in range(X.shape[0]):
        x = X[b]
        grad += e[b] * (2.0 * np.outer(x, x) @ W - 2.0 * W)
    return grad / X.shape[0]


def euclid_step(W: np.ndarray, X: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """One plain SGD step W - lr * gradient on a batch (rows of X)."""
    return W - lr * euclid_gradient(W, X, y)


def euclid_sgd(W0: np.ndarray, X: np.ndarray, y: np.ndarray, lr: float, batch: int = 1) -> np.ndarray:
    """Run len(X) / batch reference steps of the Euclidean student; returns the final W."""
    W = np.array(W0, dtype=np.float64)
    for k in range(X.shape[0] // batch):
        sl = slice(k * batch, (k + 1) * batch)
        W = euclid_step(W, X[sl], y[sl], lr)
    return W


def euclid_risk_dense(W: np.ndarray, theta: np.ndarray, coef: np.ndarray) -> float:
    """||W W^T - M*||_F^2 / ||M*||_F^2 with the d x d matrices formed explicitly."""
    M = theta @ np.diag(coef) @ theta.T
    D = W @ W.T - M
    return float(np.sum(D * D) / np.sum(M * M))


def run_euclid_reference(W: np.ndarray, teacher, steps: int, lr: float, rng: np.random.Generator) -> np.ndarray:
    """``steps`` Euclidean SGD steps in plain NumPy, batch 1, with NumPy sampling (the
    benchmark baseline): W <- (1 + 2 lr e) W - 2 lr e x z^T with z = W^T x."""
    theta = teacher.theta() if teacher.directions is not None else None
    r = teacher.r
    for _ in range(steps):
        x = rng.standard_normal(W.shape[0])
        P = x[:r] if theta is None else x @ theta
        y = (P * P - 1.0) @ teacher.coef
        z = W.T @ x
        e = z @ z - np.sum(W * W) - y
        W *= 1.0 + 2.0 * lr * e
        W -= np.outer((2.0 * lr * e) * x, z)
    return W
# ----------------------------------------------------------------------------- fine-tune
def finetune_design(Z: np.ndarray) -> np.ndarray:
    """The vectorised least-squares design of phase II: row s holds <z z^T - I, E_ij> for the
    symmetric basis E_ii (i = j) and E_ij + E_ji (i < j), columns in np.triu_indices order,
    so that <z z^T - I, B> = design @ B[triu].  n x N(N+1)/2: small N only."""
    n, N = Z.shape
    iu, ju = np.triu_indices(N)
    Phi = Z[:, iu] * Z[:, ju] - (iu == ju)
    return Phi * np.where(iu == ju, 1.0, 2.0)


def finetune_lstsq(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_B sum_s (<z_s z_s^T - I, B> - y_s)^2 over symmetric B by np.linalg.lstsq on the
    explicit design (:func:`finetune_design`)."""
    N = Z.shape[1]
    b = np.linalg.lstsq(finetune_design(Z), y, rcond=None)[0]
    B = np.zeros((N, N))
    iu, ju = np.triu_indices(N)
    B[iu, ju] = b
    B[ju, iu] = b
    return B


def finetune_risk_dense(W: np.ndarray, B: np.ndarray, theta: np.ndarray, coef: np.ndarray) -> float:
    """||W B W^T - M*||_F^2 / ||M*||_F^2 with the d x d matrices formed explicitly (MODEL.md §1)."""
    Mstar = (theta * coef) @ theta.T
    S = W @ B @ W.T
    return float(np.sum((S - Mstar) ** 2) / np.sum(Mstar**2))


# ----------------------------------------------------------------------------- QPLR
def qplr_sgd(G, lam: np.ndarray, theta: np.ndarray, tail: float, noise: float, lr: np.ndarray,
             lr_linear: np.ndarray, v0: np.ndarray, w0: np.ndarray | None = None, record=None):
    """SGD of the quadratic model f = <x, v (.) v> and the linear model f = <x, w> (seed 003),
    a loop over steps vectorised over replicas.

    G : the standard normals, anything with ``G[t]`` of shape (R, M + 2) (an array (T, R, M + 2)
    or an object drawing them on demand): [r, :M] give x = sqrt(lambda) g, [r, M] the tail
    deviate (variance ``tail``), [r, M + 1] the noise xi.  lr, lr_linear : (T,) step sizes.
    v0 : (M,) or (R, M).  Loss e^2/2: v -= lr_t 2 e x v, w -= lr_lin_t e x.  Returns
    (v, w, risk, risk_linear) with the exact excess risks sum_i lambda_i (v_i^2 - theta_i)^2
    + tail at the record steps (default: the end).
    """
    T = len(lr)
    M = len(lam)
    R = G.shape[1] if hasattr(G, "shape") else np.shape(v0)[0]
    sl = np.sqrt(lam)
    v = np.array(np.broadcast_to(v0, (R, M)), dtype=np.float64)
    w = None if w0 is None else np.array(np.broadcast_to(w0, (R, M)), dtype=np.float64)
    rec = [T] if record is None else list(record)
    risks, risks_l = [], []

    def store():
        risks.append(((v * v - theta) ** 2) @ lam + tail)
        if w is not None:
            risks_l.append(((w - theta) ** 2) @ lam + tail)

    for t in range(T):
        while rec and rec[0] == t:
            rec.pop(0)
            store()
        Gt = G[t]
        X = Gt[:, :M] * sl
        y = X @ theta + np.sqrt(tail) * Gt[:, M] + noise * Gt[:, M + 1]
        e = np.sum(X * v * v, axis=1) - y
        if w is not None:
            el = np.sum(X * w, axis=1) - y
            w -= (lr_linear[t] * el)[:, None] * X
        v -= (2.0 * lr[t] * e)[:, None] * X * v
    while rec and rec[0] == T:
        rec.pop(0)
        store()
    return v, w, np.array(risks), (np.array(risks_l) if w is not None else None)
