"""Emergence in single-stage Euclidean SGD (seed 002): features are learnt one after
another, each after a plateau, at times proportional to 1 / lambda_j.

Setup: d = 512, r = 10 features with lambda_j ~ j^-1 (||lambda|| = 1), width N = 20,
lr * d = 0.005, small Gaussian start of scale s = 0.01 (quadfast.euclid.small_init),
8 seeds, batch 1, float64.  For each feature j the emergence time t_j is the first time
A_j = ||W^T theta_j||^2 / lambda_j reaches 1/2, against three predictions:
  * leading order (quadfast.euclid.predicted_emergence):
      t_j = log(d lambda_j / ((N - j + 1) s^2) - 1) / (8 lambda_j);
  * the population flow from each run's own start (quadfast.euclid.population_flow);
  * the scaling t_j = (lambda_1 / lambda_j) t_1 ("1/lambda_j times the plateau").
Writes docs/euclid_emergence.png and prints a Markdown table (a few minutes of one core).

Run:  python benchmarks/euclid_emergence.py [--quick]
"""
import argparse
import time
from pathlib import Path

import numpy as np

import quadfast as qf
from quadfast import euclid as eu


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="d = 128, r = 4, 2 seeds (seconds)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "euclid_emergence.png"))
    a = ap.parse_args(argv)
    d, r, N, lrd, s0, seeds = (128, 4, 8, 0.005, 0.01, 2) if a.quick else (512, 10, 20, 0.005, 0.01, 8)
    teacher = qf.Teacher(qf.power_law_coef(r, 1.0), d=d)
    lam = teacher.coef
    pred = eu.predicted_emergence(lam, d, N, s0)
    lr = lrd / d
    steps = int(1.5 * pred[-1] / lr)
    rec = np.unique(np.linspace(0, steps, 1000).astype(np.int64))
    meas, flow, trajs = [], [], []
    t0 = time.perf_counter()
    for seed in range(seeds):
        sim = qf.EuclideanSGD(teacher, N, lr=lr, seed=seed, init_scale=s0)
        fl = eu.population_flow(teacher, sim.W, lr * rec)
        tr = sim.run(steps, record=rec)
        meas.append(eu.emergence_times(tr.time, tr.alignment))
        flow.append(eu.emergence_times(fl["time"], fl["alignment"]))
        trajs.append((tr, fl))
    wall = time.perf_counter() - t0
    meas, flow = np.array(meas), np.array(flow)
    m, sd = meas.mean(0), meas.std(0, ddof=1)
    scal = lam[0] / lam * m[0]
    print(f"d={d} r={r} N={N} lr*d={lrd} init_scale={s0} seeds={seeds} steps/run={steps} wall={wall:.0f}s\n")
    print("| j | lambda_j | measured t_j (mean ± sd) | flow, same starts | leading order | (lambda_1/lambda_j) t_1 | lambda_j t_j |")
    print("|---|---|---|---|---|---|---|")
    for j in range(r):
        print(f"| {j + 1} | {lam[j]:.3f} | {m[j]:.2f} ± {sd[j]:.2f} | {flow[:, j].mean():.2f} | {pred[j]:.2f} "
              f"| {scal[j]:.2f} | {lam[j] * m[j]:.2f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    tr, fl = trajs[0]
    cols = plt.cm.viridis(np.linspace(0, 0.9, r))
    for j in range(r):
        ax[0].plot(tr.time, tr.alignment[:, j], color=cols[j], lw=1.2)
        ax[0].plot(fl["time"], fl["alignment"][:, j], color=cols[j], lw=0.8, ls="--")
    ax[0].set(xlabel="t = lr * steps", ylabel="A_j = ||W^T theta_j||^2 / lambda_j",
              title="alignments (seed 0; dashed: population flow)")
    ax[1].semilogy(tr.time, tr.risk, color="k", label="SGD")
    ax[1].semilogy(fl["time"], fl["risk"], color="C1", ls="--", label="population flow")
    ax[1].set(xlabel="t", ylabel="||W W^T - M*||^2 / ||M*||^2", title="risk: plateaus and drops")
    ax[1].legend()
    jj = np.arange(1, r + 1)
    ax[2].errorbar(1 / lam, m, yerr=sd, fmt="o", color="k", label="measured (mean ± sd)")
    ax[2].plot(1 / lam, flow.mean(0), "s", mfc="none", color="C1", label="flow, same starts")
    ax[2].plot(1 / lam, pred, "-", color="C0", label="leading order")
    ax[2].plot(1 / lam, scal, ":", color="C2", label="(lambda_1/lambda_j) t_1")
    ax[2].set(xlabel="1 / lambda_j", ylabel="emergence time t_j", title=f"j = 1..{jj[-1]}")
    ax[2].legend(fontsize=8)
    fig.suptitle(f"Euclidean SGD, d={d}, r={r}, N={N}, lr d={lrd}, init scale {s0}", fontsize=10)
    fig.tight_layout()
    if not a.quick:
        fig.savefig(a.out, dpi=80)
        print(f"\nwrote {a.out}")
    return meas, flow, pred


if __name__ == "__main__":
    main()
