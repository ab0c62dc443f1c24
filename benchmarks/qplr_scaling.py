"""Evidence for the scaling laws of quadratically parameterised linear regression (seed 003)
with quadfast.QPLR: the piecewise power law in T and in M, and the faster rate of the
quadratic model over the linear one when alpha > beta.

Forms checked (quadfast.qplr.predicted_exponents; normalisation lambda_i = i^-alpha,
lambda_i theta*_i^2 = i^-beta, schedule and start of quadfast.qplr's module doc):
- in T, at a model size M well above the effective dimension D ~ T^(2/(alpha+beta)):
  excess risk minus the approximation floor zeta(beta, M+1) ~ T^(-(2 beta - 2)/(alpha + beta))
  for the quadratic model, ~ T^(-(beta - 1)/alpha) for the linear model (alpha > beta);
- in T, at a small M: the risk saturates at the floor zeta(beta, M+1) (the other piece);
- in M, at a large T with M below D: excess risk ~ M^(1 - beta) (the approximation term);
  the finite-M tail zeta(beta, M+1) is drawn for reference.
Each point is the mean over R replicas of the final excess risk of a run of T steps (each
T is its own run, since the schedule depends on T).  Fit windows are fixed below, before
looking at the slopes: T in [2^13, 2^20] (the first 2^13 steps are the start-up of phase I),
M in [4, 16] (below D(2^20) ~ 50).

Run: python benchmarks/qplr_scaling.py [--quick]   (about 70 s on 2 loaded cores; writes
docs/qplr_scaling.png and prints the table)
"""
import argparse
import time
from pathlib import Path

import numpy as np

import quadfast as qf


def t_scan(alpha, beta, M, Ts, R, noise, seed=1):
    p = qf.QPLR(M=M, alpha=alpha, beta=beta, noise=noise)
    q, lin = [], []
    for T in Ts:
        out = p.run(int(T), replicas=R, seed=seed)
        if out.diverged.any() or out.diverged_linear.any():
            raise RuntimeError(f"a replica diverged at alpha={alpha}, beta={beta}, M={M}, T={T}")
        q.append(out.risk[-1].mean())
        lin.append(out.risk_linear[-1].mean())
    return p, np.array(q), np.array(lin)


def m_scan(alpha, beta, Ms, T, R, noise, seed=1):
    q, tails = [], []
    for M in Ms:
        p = qf.QPLR(M=int(M), alpha=alpha, beta=beta, noise=noise)
        out = p.run(int(T), replicas=R, seed=seed, linear=False)
        if out.diverged.any():
            raise RuntimeError(f"a replica diverged at M={M}")
        q.append(out.risk[-1].mean())
        tails.append(p.tail)
    return np.array(q), np.array(tails)


def slope(x, y, lo, hi):
    m = (x >= lo) & (x <= hi)
    return np.polyfit(np.log(x[m]), np.log(y[m]), 1)[0]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "qplr_scaling.png"))
    args = ap.parse_args(argv)
    R, noise = 8, 0.1
    tmax = 14 if args.quick else 20
    Ts = 2.0 ** np.arange(10, tmax + 1)
    lo_T, hi_T = 2.0**13, 2.0**tmax
    Ms = np.array([2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64])
    t0 = time.perf_counter()
    rows, curves = [], {}
    for alpha, beta, M in [(5.0, 2.0, 128), (3.0, 2.0, 256)]:
        p, q, lin = t_scan(alpha, beta, M, Ts, R, noise)
        pred = qf.qplr.predicted_exponents(alpha, beta)
        sq, sl = slope(Ts, q - p.tail, lo_T, hi_T), slope(Ts, lin - p.tail, lo_T, hi_T)
        rows.append((f"alpha={alpha:g}, beta={beta:g}, M={M}", "T, quadratic", "-(2b-2)/(a+b)", pred["T_quadratic"], sq,
                     "2^13-2^%d" % tmax))
        rows.append((f"alpha={alpha:g}, beta={beta:g}, M={M}", "T, linear", "-(b-1)/a", pred["T_linear"], sl,
                     "2^13-2^%d" % tmax))
        curves[(alpha, beta)] = (p, q, lin, pred)
    p8, q8, _ = t_scan(5.0, 2.0, 8, Ts, R, noise)
    qM, tails = m_scan(5.0, 2.0, Ms, Ts[-1], R, noise)
    sM = slope(Ms.astype(float), qM, 4, 16)
    sTail = slope(Ms.astype(float), tails, 4, 16)
    rows.append(("alpha=5, beta=2, T=2^%d" % tmax, "M, quadratic", "1-b", 1.0 - 2.0, sM, "M = 4-16"))
    elapsed = time.perf_counter() - t0

    lines = ["| setting | law | predicted form | predicted | fitted | fit window |", "|---|---|---|---|---|---|"]
    for s, law, form, pr, fi, win in rows:
        lines.append(f"| {s} | {law} | {form} | {pr:.3f} | {fi:.3f} | {win} |")
    lines.append(f"| alpha=5, beta=2 | M, exact tail zeta(b, M+1) | finite-M form | {sTail:.3f} | - | M = 4-16 |")
    print("\n".join(lines))
    print(f"\nR = {R} replicas, noise = {noise}, simulation time {elapsed:.1f} s")
    a5 = curves[(5.0, 2.0)]
    print("alpha=5, beta=2, M=128: quadratic/linear excess risk at T = 2^%d: %.4f / %.4f" % (tmax, a5[1][-1], a5[2][-1]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    for k, (alpha, beta) in enumerate([(5.0, 2.0), (3.0, 2.0)]):
        p, q, lin, pred = curves[(alpha, beta)]
        a = ax[k]
        a.loglog(Ts, q - p.tail, "o-", label="quadratic <x, v.v>")
        a.loglog(Ts, lin - p.tail, "s-", label="linear <x, w>")
        m = Ts >= lo_T
        for y, e, style in ((q - p.tail, pred["T_quadratic"], "C0--"), (lin - p.tail, pred["T_linear"], "C1--")):
            c = np.exp(np.mean(np.log(y[m]) - e * np.log(Ts[m])))
            a.loglog(Ts[m], c * Ts[m] ** e, style, lw=1, label=f"T^{e:.3f} (seed 003)")
        if alpha == 5.0:
            a.loglog(Ts, q8, "^-", color="C2", label="quadratic, M = 8 (total)")
            a.axhline(p8.tail, color="C2", ls=":", lw=1, label="floor zeta(2, 9)")
        a.set_title(f"alpha={alpha:g}, beta={beta:g}, M={p.M}: risk - zeta(beta, M+1)")
        a.set_xlabel("T (samples = steps)")
        a.legend(fontsize=7)
    a = ax[2]
    a.loglog(Ms, qM, "o-", label=f"quadratic, T = 2^{tmax}")
    a.loglog(Ms, tails, "k:", label="zeta(beta, M+1)")
    a.loglog(Ms, Ms ** (1.0 - 2.0), "k--", lw=1, label="M^(1-beta)")
    a.set_xticks(Ms[::2], [str(m) for m in Ms[::2]])
    a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a.set_title("alpha=5, beta=2: excess risk vs model size M")
    a.set_xlabel("M")
    a.legend(fontsize=7)
    fig.tight_layout()
    if not args.quick:
        fig.savefig(args.out, dpi=80)
        print("wrote", args.out)
    return rows


if __name__ == "__main__":
    main()
