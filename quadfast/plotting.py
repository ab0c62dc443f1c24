"""Figures (matplotlib, headless Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


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
    if "flow_time" in result:
        ft = np.asarray(result["flow_time"])
        fp = ft > 0
        ax1.loglog(ft[fp], np.asarray(result["flow_risk"])[fp], "k--", lw=1, label="population flow (MODEL.md §4)")
    ax1.set_xlabel("time t = lr · steps")
    ax1.set_ylabel("risk  1 - tr((GΛ)²)/tr(Λ²)")
    ax1.legend()
    ax1.grid(True, which="both", alpha=0.3)
    r = align.shape[1]
    show = np.unique(np.round(np.geomspace(1, r, min(r, 8))).astype(int)) - 1
    cmap = plt.get_cmap("viridis")
    for k, j in enumerate(show):
        ax2.semilogx(t[pos], align[pos, j], color=cmap(k / max(1, len(show) - 1)), label=f"j = {j + 1}")
    ax2.set_xlabel("time t = lr · steps")
    ax2.set_ylabel("alignment  A_j = ||Wᵀθ_j||²")
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
