"""Figures (matplotlib, headless Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(result, path) -> Path:
    """Risk and per-feature alignment A_j(t) against time t = lr * steps (log time axis).

    ``result`` is a :class:`quadfast.results.Result` of kind ``stiefel-run`` (or a dict with
    ``time``, ``risk``, ``alignment`` and optionally ``flow_time``/``flow_risk``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = np.asarray(result["time"])
    pos = t > 0
    risk = np.asarray(result["risk"])
    align = np.asarray(result["alignment"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ax1.loglog(t[pos], risk[pos], "o-", ms=3, label="SGD (quadfast)")
    ft = fp = None
    if "flow_time" in result:
        ft = np.asarray(result["flow_time"])
        fp = ft > 0
        ax1.loglog(ft[fp], np.asarray(result["flow_risk"])[fp], "k--", lw=1, label="population flow (MODEL.md §4)")
    if "finetune_risk" in result:  # two-stage: phase II's least-squares B at the end of phase I
        ax1.plot([t[-1]], [float(result["finetune_risk"])], "r*", ms=11,
                 label=f"after the fine-tune (phase II): {float(result['finetune_risk']):.3g}")
    ax1.set_xlabel("time t = lr · steps")
    ax1.set_ylabel("risk  1 - tr((GΛ)²)/tr(Λ²)")
    ax1.legend()
    ax1.grid(True, which="both", alpha=0.3)
    r = align.shape[1]
    show = np.unique(np.round(np.geomspace(1, r, min(r, 8))).astype(int)) - 1
    cmap = plt.get_cmap("viridis")
    fa = np.asarray(result["flow_alignment"]) if "flow_alignment" in result else None
    for k, j in enumerate(show):
        col = cmap(k / max(1, len(show) - 1))
        ax2.semilogx(t[pos], align[pos, j], color=col, label=f"j = {j + 1}")
        if fa is not None:
            ax2.semilogx(ft[fp], fa[fp, j], "--", color=col, lw=0.9)
    ax2.set_xlabel("time t = lr · steps")
    ax2.set_ylabel("alignment  A_j = ||Wᵀθ_j||²" + ("  (dashed: flow)" if fa is not None else ""))
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend(fontsize=8, ncol=2)
    ax2.grid(True, which="both", alpha=0.3)
    meta = getattr(result, "meta", {}) or {}
    cfg = meta.get("config", {})
    if cfg:
        fig.suptitle(
            f"Stiefel SGD: d={cfg.get('d')}, r={cfg.get('r')}, N={cfg.get('width')}, alpha={cfg.get('alpha')}, "
            f"lr·d={cfg.get('lr_d')}, batch={cfg.get('batch')}, seed={cfg.get('seed')}", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(results, fits, path) -> Path:
    """Risk against time t and against compute (flops) per alpha, log-log (MODEL.md §5).

    SGD as markers, the Riccati flow from the same start dashed, and the least-squares
    line over theory's window (:func:`quadfast.theory.powerlaw_window`) with its fitted
    slope, confidence interval and the theory exponent ``(1 - 2 alpha)/alpha`` in the legend.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
    cmap = plt.get_cmap("plasma")
    by_alpha = sorted(results, key=lambda r: r.meta["config"]["alpha"])
    for i, res in enumerate(by_alpha):
        c = res.meta["config"]
        col = cmap(0.1 + 0.7 * i / max(1, len(by_alpha) - 1))
        fit = next((f for f in fits if f["alpha"] == c["alpha"] and f["label"] == res.meta.get("label")), None)
        t, R = np.asarray(res["time"]), np.asarray(res["risk"])
        flops = np.asarray(res["flops"]) if "flops" in res else None
        scale = (flops[-1] / t[-1]) if flops is not None and t[-1] > 0 else None
        pos = t > 0
        lab = f"α={c['alpha']:g}"
        if fit and fit.get("fit"):
            f = fit["fit"]
            lab += f": slope {f['slope']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}], theory {fit['theory_slope']:.2f}"
        elif fit and fit.get("note"):
            lab += ": no fit (α ≤ 1/2: no power law)" if c["alpha"] <= 0.5 else ": no fit"
        for ax, x in ((axes[0], t), (axes[1], None if scale is None else t * scale)):
            if x is None:
                continue
            ax.loglog(x[pos], R[pos], "o", ms=2.5, color=col, label=lab if ax is axes[0] else f"α={c['alpha']:g}")
            if "flow_risk" in res:
                ft = np.asarray(res["flow_time"])
                fp = ft > 0
                ax.loglog((ft if ax is axes[0] else ft * scale)[fp], np.asarray(res["flow_risk"])[fp], "--",
                          color=col, lw=1)
            if fit and fit.get("fit"):
                f = fit["fit"]
                lo, hi = f["window"]
                xx = np.geomspace(max(lo, t[pos][0]), min(hi, t[-1]), 20)
                yy = np.exp(f["intercept"]) * xx ** f["slope"]
                ax.loglog(xx if ax is axes[0] else xx * scale, yy, "-", color="k", lw=2.2, alpha=0.6)
    axes[0].set_xlabel("time t = lr · steps")
    axes[1].set_xlabel("compute (flops = 6 d N · batch · steps)")
    for ax in axes:
        ax.set_ylabel("risk")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7.5, title="markers: SGD, dashed: Riccati flow, black: fit over theory's window",
                   title_fontsize=7.5)
    axes[1].legend(fontsize=8)
    c = by_alpha[0].meta["config"] if by_alpha else {}
    fig.suptitle(f"Scaling exponents: d={c.get('d')}, r={c.get('r')}, N={c.get('width')}, lr·d={c.get('lr_d', 0):.3g}",
                 fontsize=10)
    return _save(fig, path)


def plot_alignment(result, t_theory, path, features=12, quantity="A_j = ||Wᵀθ_j||²") -> Path:
    """Alignment A_j(t) as a heatmap (features against log time) and as curves, with
    theory's emergence times (:func:`quadfast.theory.emergence_time`, or those given)
    marked; ``quantity`` labels the colour bar."""
    plt = _plt()
    t = np.asarray(result["time"])
    A = np.asarray(result["alignment"])
    pos = t > 0
    r = A.shape[1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
    tp = t[pos]
    edges = np.concatenate([[tp[0] ** 1.5 / tp[1] ** 0.5], np.sqrt(tp[1:] * tp[:-1]), [tp[-1] ** 1.5 / tp[-2] ** 0.5]])
    mesh = ax1.pcolormesh(edges, np.arange(r + 1) + 0.5, A[pos].T, cmap="viridis", vmin=0, vmax=1, shading="flat")
    ax1.set_xscale("log")
    ax1.invert_yaxis()
    k = len(t_theory)
    ax1.plot(t_theory, np.arange(1, k + 1), "w|", ms=9, mew=2, label="theory emergence t_j")
    ax1.set_xlim(edges[0], edges[-1])
    ax1.set_xlabel("time t = lr · steps")
    ax1.set_ylabel("feature j (λ_j decreasing)")
    ax1.legend(loc="lower left", fontsize=8)
    fig.colorbar(mesh, ax=ax1, label=quantity)
    cmap = plt.get_cmap("viridis")
    show = np.unique(np.round(np.geomspace(1, k, min(k, 6))).astype(int)) - 1
    fa = np.asarray(result["flow_alignment"]) if "flow_alignment" in result else None
    for i, j in enumerate(show):
        col = cmap(0.9 * i / max(1, len(show) - 1))
        ax2.semilogx(tp, A[pos, j], color=col, label=f"j = {j + 1}")
        if fa is not None:
            ft = np.asarray(result["flow_time"])
            ax2.semilogx(ft[ft > 0], fa[ft > 0, j], "--", color=col, lw=0.9)
        ax2.axvline(t_theory[j], color=col, ls=":", lw=1.2)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("time t = lr · steps")
    ax2.set_ylabel("A_j (solid SGD, dashed flow, dotted: theory t_j)")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    c = result.meta.get("config", {}) if hasattr(result, "meta") else {}
    fig.suptitle(f"Sequential alignment: d={c.get('d')}, r={c.get('r')}, N={c.get('width')}, α={c.get('alpha')}, "
                 f"lr·d={c.get('lr_d', 0):.3g}", fontsize=10)
    return _save(fig, path)


def plot_sample_complexity(results, points, target, path) -> Path:
    """Risk against samples n per (d, alpha); risk against n / n_theory(d) (MODEL.md §5);
    and the samples that reach ``target`` against d."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    alphas = sorted({r.meta["config"]["alpha"] for r in results})
    ds = sorted({r.meta["config"]["d"] for r in results})
    markers = "osD^v<>"
    cmaps = [plt.get_cmap(n) for n in ("Blues", "Oranges", "Greens", "Purples")]
    for res in results:
        c = res.meta["config"]
        ia, idd = alphas.index(c["alpha"]), ds.index(c["d"])
        col = cmaps[ia % len(cmaps)](0.4 + 0.6 * idd / max(1, len(ds) - 1))
        n = np.asarray(res["samples"], dtype=np.float64)
        R = np.asarray(res["risk"])
        pos = n > 0
        p = next(q for q in points if q["label"] == res.meta.get("label"))
        axes[0].loglog(n[pos], R[pos], "-", color=col, label=f"α={c['alpha']:g}, d={c['d']}")
        if p["n_theory"]:
            axes[1].loglog(n[pos] / p["n_theory"], R[pos], "-", color=col)
    for ax in axes[:2]:
        ax.axhline(target, color="k", ls=":", lw=1)
        ax.set_ylabel("risk")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_xlabel("samples n = steps · batch")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set_xlabel("n / n_theory,  n_theory = d log d (α>1/2),  d r^{1+α} log(1+d/r) (α<1/2)")
    for ia, a in enumerate(alphas):
        grp = sorted((q for q in points if q["alpha"] == a and q["n_target"]), key=lambda q: q["d"])
        if not grp:
            continue
        col = cmaps[ia % len(cmaps)](0.8)
        dd = np.array([q["d"] for q in grp], dtype=float)
        axes[2].loglog(dd, [q["n_target"] for q in grp], markers[ia % 7] + "-", color=col, label=f"α={a:g}: measured")
        if all(q["n_theory"] for q in grp):
            th = np.array([q["n_theory"] for q in grp])
            axes[2].loglog(dd, th * grp[0]["n_target"] / th[0], "--", color=col, label=f"α={a:g}: theory (scaled)")
    axes[2].set_xlabel("d")
    axes[2].set_ylabel(f"samples to reach risk {target:g}")
    axes[2].legend(fontsize=8)
    axes[2].grid(True, which="both", alpha=0.3)
    fig.suptitle("Sample complexity of online SGD (MODEL.md §5), lr = theory.learning_rate", fontsize=10)
    return _save(fig, path)


def plot_qplr_scaling(settings, path) -> Path:
    """Final excess risk above the floor zeta(beta, M+1) against T, log-log, one panel per
    setting: the quadratic model (circles) and the linear baseline (squares), each with its
    least-squares line over the fit window (solid) and the seed-003 exponent through the
    same points (dashed)."""
    plt = _plt()
    n = max(1, len(settings))
    import matplotlib.ticker

    fig, axes = plt.subplots(1, n, figsize=(max(6.4, 5.2 * n), 4.4), constrained_layout=True, squeeze=False)
    for ax, s in zip(axes[0], settings):
        T = np.asarray(s["steps"], dtype=np.float64)
        lo, hi = s["window"]
        for k, (model, mark) in enumerate((("quadratic", "o"), ("linear", "s"))):
            if f"excess_{model}" not in s:
                continue
            y = np.asarray(s[f"excess_{model}"])
            col = f"C{k}"
            ok = y > 0
            ax.loglog(T[ok], y[ok], mark + "-", color=col, ms=4, lw=0.8,
                      label=f"{model}: " + ("<x, v⊙v>" if model == "quadratic" else "<x, w>"))
            f = s["fits"].get(model, {})
            if "slope" in f:
                xx = np.geomspace(max(lo, T.min()), min(hi, T.max()), 20)
                ax.loglog(xx, np.exp(f["intercept"]) * xx ** f["slope"], "-", color=col, lw=2.2, alpha=0.5,
                          label=f"fit {f['slope']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}]")
                m = (T >= lo) & (T <= hi) & ok
                e = f["predicted"]
                c0 = np.exp(np.mean(np.log(y[m]) - e * np.log(T[m])))
                ax.loglog(xx, c0 * xx ** e, "--", color=col, lw=1, label=f"seed 003: T^{e:.3f}")
        ax.axvspan(lo, hi, color="0.9", zorder=0)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("T (steps = samples)")
        ax.set_ylabel("excess risk − ζ(β, M+1)")
        ax.set_title(f"α={s['alpha']:g}, β={s['beta']:g}, M={s['M']}, σ={s['noise']:g}, R={s['replicas']}",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("QPLR (seed 003): excess risk against T; grey: fit window", fontsize=10)
    return _save(fig, path)


def plot_qplr_run(result, path) -> Path:
    """One ``qplr`` run: excess risk against steps along the schedule, per replica (thin)
    and averaged (thick), quadratic and linear models, with the floor zeta(beta, M+1)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    t = np.asarray(result["steps"], dtype=np.float64)
    pos = t > 0
    for k, (key, name) in enumerate((("risk", "quadratic <x, v⊙v>"), ("risk_linear", "linear <x, w>"))):
        if key not in result:
            continue
        col = f"C{k}"
        reps = np.asarray(result[f"{key}_replicas"])
        for j in range(reps.shape[1]):
            ax.loglog(t[pos], reps[pos, j], color=col, lw=0.5, alpha=0.35)
        ax.loglog(t[pos], np.asarray(result[key])[pos], color=col, lw=2, label=f"{name}, replica mean")
    ax.axhline(float(result["tail"]), color="k", ls=":", lw=1, label="floor ζ(β, M+1)")
    ax.set_xlabel("steps t")
    ax.set_ylabel("excess risk")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    cfg = (getattr(result, "meta", {}) or {}).get("config", {})
    if cfg:
        ax.set_title(f"QPLR: M={cfg.get('M')}, α={cfg.get('alpha')}, β={cfg.get('beta')}, σ={cfg.get('noise')}, "
                     f"T={cfg.get('steps')}, R={cfg.get('replicas')}", fontsize=9)
    return _save(fig, path)
