"""The experiments the papers call for: analyses and figures drawn from a sweep's results.

An :class:`Experiment` turns the result files of a configuration's runs into numbers
(``summary``, a dict written to ``summary.json``) and figures (PNG). Registered here:

``single``
    Each run's risk and alignments against time with the population-flow overlay (and,
    for ``two-stage`` runs, the risk after the fine-tune).
``scaling``
    MODEL.md §5, risk ~ t^{(1-2alpha)/alpha}: risk against time and compute (flops) on
    log-log axes per alpha, the slope fitted by :func:`quadfast.theory.fit_loglog_slope`
    over :func:`quadfast.theory.powerlaw_window`, against theory and the Riccati flow.
``alignment``
    Sequential alignment: A_j(t) as curves and a heatmap, with the emergence times of
    :func:`quadfast.theory.emergence_time` marked (of :func:`quadfast.euclid.predicted_emergence`
    for ``euclidean-sgd`` runs), and the measured crossing times.
``sample-complexity``
    MODEL.md §5, online SGD sample sizes: the samples needed to reach a risk target
    against d, for alpha above and below 1/2, against :func:`quadfast.theory.sample_size`.
``qplr-scaling``
    Seed 003, runs of the ``qplr`` procedure over a grid of T: the excess risk above the
    floor zeta(beta, M+1) against T for the quadratic and linear models, fitted against
    :func:`quadfast.qplr.predicted_exponents`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .procedures import Param

__all__ = ["Experiment", "register_experiment", "get_experiment", "experiments", "analyse", "crossing"]


@dataclass
class Experiment:
    name: str
    analyse: Callable
    options: dict = field(default_factory=dict)
    doc: str = ""

    def check_option(self, key, value):
        if key not in self.options:
            raise ValueError(f"unknown option of experiment {self.name!r} (known: {', '.join(sorted(self.options)) or 'none'})")
        return self.options[key].check(value)

    def resolve(self, given: dict) -> dict:
        out = {k: p.default for k, p in self.options.items()}
        for k, v in given.items():
            out[k] = self.check_option(k, v)
        return out


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(exp: Experiment) -> Experiment:
    _REGISTRY[exp.name] = exp
    return exp


def get_experiment(name: str) -> Experiment:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"experiment: unknown experiment {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def experiments() -> list[str]:
    return sorted(_REGISTRY)


def analyse(name: str, results: list, options: dict, out) -> dict:
    """Run experiment ``name``'s analysis on loaded results; writes figures and
    ``summary.json`` into ``out`` and returns the summary (with ``figures``)."""
    exp = get_experiment(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = exp.analyse(results, exp.resolve(options), out)
    summary["experiment"] = name
    from .results import _jsonable

    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1))
    return summary


def crossing(x, y, level):
    """First ``x`` where ``y`` crosses ``level`` (linear interpolation in ``log x``); None if never.

    ``y`` may go up (alignment) or down (risk) through ``level``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    up = y[0] < level
    hit = np.flatnonzero(y >= level) if up else np.flatnonzero(y <= level)
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    if x0 <= 0:
        return float(x1)
    f = (level - y0) / (y1 - y0)
    return float(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))


# ----------------------------------------------------------------------------- single
def _single(results, opts, out):
    from .plotting import plot_run

    figs, runs = [], []
    for res in results:
        label = res.meta.get("label") or res.meta.get("run_id", "run")
        png = plot_run(res, out / f"run-{_safe(label)}.png")
        figs.append(png.name)
        row = {"label": label, "final_time": float(res["time"][-1]), "final_risk": float(res["risk"][-1])}
        if "finetune_risk" in res:  # a two-stage run: the risk after phase II, and the optimum for W
            row.update({k: float(res[k]) for k in ("finetune_risk", "finetune_risk_psd", "optimum_risk")})
            row.update({k: res.meta["finetune"][k] for k in ("iterations", "residual", "n")})
        runs.append(row)
    return {"runs": runs, "figures": figs}


def _safe(s):
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in str(s))


register_experiment(Experiment("single", _single, doc="risk and alignments per run, with the flow overlay"))


# ----------------------------------------------------------------------------- scaling
def _scaling(results, opts, out):
    from . import theory
    from .plotting import plot_scaling

    rows = []
    for res in sorted(results, key=lambda r: r.meta["config"]["alpha"]):
        c = res.meta["config"]
        a, d, N, r = c["alpha"], c["d"], c["width"], c["r"]
        row = {"alpha": a, "d": d, "width": N, "r": r, "label": res.meta.get("label"),
               "theory_slope": None, "window": None, "fit": None, "flow_fit": None, "note": ""}
        try:
            row["theory_slope"] = theory.risk_exponent(a)
            win = theory.powerlaw_window(a, d, N, r, j_lo=opts["j_lo"], eps=opts["eps"])
            row["window"] = win
        except ValueError as exc:
            row["note"] = f"no power-law fit: {exc}"
        if row["window"] is not None:
            t, R = res["time"], res["risk"]
            try:
                f = theory.fit_loglog_slope(t, R, window=row["window"], level=opts["level"])
                row["fit"] = f._asdict()
            except ValueError as exc:
                row["note"] = f"SGD fit impossible: {exc}"
            if "flow_risk" in res:
                try:
                    row["flow_fit"] = theory.fit_loglog_slope(res["flow_time"], res["flow_risk"], window=row["window"],
                                                              level=opts["level"])._asdict()
                except ValueError:
                    pass
        rows.append(row)
    png = plot_scaling(results, rows, out / "scaling.png")
    return {"fits": rows, "figures": [png.name],
            "note": "time and compute differ by the constant factor 6 d N batch / lr, so the slopes are equal"}


register_experiment(Experiment("scaling", _scaling, options={
    "j_lo": Param("int", 8, "window starts at the emergence of feature j_lo (theory.powerlaw_window)", lo=1),
    "eps": Param("float", 0.05, "window ends where the finite-r bend changes the local slope by eps", lo=0.0,
                 lo_open=True),
    "level": Param("float", 0.95, "confidence level of the slope interval", lo=0.0, hi=1.0, lo_open=True, hi_open=True),
}, doc="risk against time and compute per alpha, fitted slopes against theory and the flow"))


# ----------------------------------------------------------------------------- alignment
def _alignment(results, opts, out):
    from . import theory
    from .plotting import plot_alignment

    summaries, figs = [], []
    for res in results:
        c = res.meta["config"]
        coef = np.asarray(res["coef"])
        t = np.asarray(res["time"])
        A = np.asarray(res["alignment"])
        k = min(opts["features"], coef.size, c["width"])
        euclidean = res.meta.get("procedure") == "euclidean-sgd"
        if euclidean:  # the unconstrained student from a small start (docs/readme_euclid.md)
            from .euclid import predicted_emergence

            t_theory = predicted_emergence(coef[:k], c["d"], c["width"], c["init_scale"], level=opts["level"])
        else:
            t_theory = theory.emergence_time(coef[:k], c["d"], c["width"], level=opts["level"])
        t_sgd = [crossing(t, A[:, j], opts["level"]) for j in range(k)]
        t_flow = ([crossing(res["flow_time"], res["flow_alignment"][:, j], opts["level"]) for j in range(k)]
                  if "flow_alignment" in res else None)
        seen = [x for x in t_sgd if x is not None]
        order_ok = bool(np.all(np.diff(seen) >= 0)) if len(seen) > 1 else None
        label = res.meta.get("label") or "run"
        png = plot_alignment(res, t_theory, out / f"alignment-{_safe(label)}.png", features=k,
                             quantity="A_j = ||Wᵀθ_j||²/λ_j" if euclidean else "A_j = ||Wᵀθ_j||²")
        figs.append(png.name)
        summaries.append({"label": label, "level": opts["level"], "t_theory": t_theory.tolist(), "t_sgd": t_sgd,
                          "t_flow": t_flow, "sgd_emerges_in_order": order_ok})
    return {"runs": summaries, "figures": figs}


register_experiment(Experiment("alignment", _alignment, options={
    "features": Param("int", 12, "features shown as curves and marked with their emergence time", lo=1),
    "level": Param("float", 0.5, "alignment level that defines emergence", lo=0.0, hi=1.0, lo_open=True, hi_open=True),
}, doc="A_j(t) curves and heatmap with theory's emergence times"))


# ----------------------------------------------------------------------------- sample complexity
def _sample_complexity(results, opts, out):
    from . import theory
    from .plotting import plot_sample_complexity

    pts = []
    for res in results:
        c = res.meta["config"]
        n = np.asarray(res["samples"], dtype=np.float64)
        n_hit = crossing(n[1:], np.asarray(res["risk"])[1:], opts["target"])
        try:
            n_theory = theory.sample_size(c["d"], c["alpha"], c["r"])
        except ValueError:
            n_theory = None
        pts.append({"d": c["d"], "alpha": c["alpha"], "r": c["r"], "width": c["width"], "lr": c["lr"],
                    "n_target": n_hit, "n_theory": n_theory, "label": res.meta.get("label")})
    fits = []
    for a in sorted({p["alpha"] for p in pts}):
        grp = sorted((p for p in pts if p["alpha"] == a), key=lambda p: p["d"])
        ok = [p for p in grp if p["n_target"] is not None]
        fit = {"alpha": a, "regime": "alpha > 1/2: n ~ d polylog d" if a > 0.5 else
               ("alpha < 1/2: n ~ d r^(1+alpha) polylog" if a < 0.5 else "alpha = 1/2: boundary"),
               "measured_slope": None, "theory_slope": None, "reached": len(ok), "runs": len(grp)}
        if len(ok) >= 2:
            x = np.log([p["d"] for p in ok])
            fit["measured_slope"] = float(np.polyfit(x, np.log([p["n_target"] for p in ok]), 1)[0])
            if all(p["n_theory"] for p in ok):
                fit["theory_slope"] = float(np.polyfit(x, np.log([p["n_theory"] for p in ok]), 1)[0])
        fits.append(fit)
    png = plot_sample_complexity(results, pts, opts["target"], out / "sample_complexity.png")
    return {"target": opts["target"], "points": pts, "fits": fits, "figures": [png.name]}


register_experiment(Experiment("sample-complexity", _sample_complexity, options={
    "target": Param("float", 0.5, "risk level whose first passage defines the samples needed", lo=0.0, hi=1.0,
                    lo_open=True, hi_open=True),
}, doc="samples to reach a risk target against d, alpha above and below 1/2"))


# ----------------------------------------------------------------------------- qplr scaling
def _qplr_scaling(results, opts, out):
    """Seed 003's law in T: for each setting (alpha, beta, M, noise and the schedule's
    constants), the final replica-mean excess risk minus the floor zeta(beta, M+1) against
    T (one run per T, since the schedule depends on T), fitted on log-log axes over
    [t_lo, t_hi] and compared with :func:`quadfast.qplr.predicted_exponents`:
    -(2 beta - 2)/(alpha + beta) (quadratic) and -(beta - 1)/alpha (linear) for
    alpha > beta, valid while M is above the effective dimension D ~ T^(2/(alpha+beta))."""
    from . import theory
    from .plotting import plot_qplr_scaling
    from .qplr import effective_dimension, predicted_exponents

    # a setting is every parameter but T and what is derived from it or does not change
    # the results (the record grid, the threads)
    free = {"steps", "phase1", "stages", "records", "threads"}
    groups: dict = {}
    for res in results:
        c = res.meta["config"]
        if res.meta.get("kind") != "qplr-run":
            raise ValueError(f"experiment: 'qplr-scaling' analyses runs of the 'qplr' procedure, got "
                             f"{res.meta.get('procedure')!r}")
        key = tuple(sorted((k, v) for k, v in c.items() if k not in free))
        groups.setdefault(key, []).append(res)

    def order(kv):
        return [(0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for _, v in kv[0]]

    settings = []
    for key, runs in sorted(groups.items(), key=order):
        runs = sorted(runs, key=lambda r: r.meta["config"]["steps"])
        c = runs[0].meta["config"]
        T = np.array([r.meta["config"]["steps"] for r in runs], dtype=np.float64)
        tail = float(runs[0]["tail"])
        pred = predicted_exponents(c["alpha"], c["beta"])
        lo = opts["t_lo"]
        hi = opts["t_hi"] if opts["t_hi"] is not None else float(T.max())
        s = {"alpha": c["alpha"], "beta": c["beta"], "M": c["M"], "noise": c["noise"], "replicas": c["replicas"],
             "steps": T.tolist(), "risk_floor": tail, "window": [lo, hi],
             "D_at_t_hi": float(effective_dimension(hi, c["alpha"], c["beta"])),
             "predicted": pred, "fits": {}, "notes": [],
             "diverged": [int(np.count_nonzero(r["diverged"])) for r in runs],
             "diverged_linear": ([int(np.count_nonzero(r["diverged_linear"])) for r in runs]
                                 if "diverged_linear" in runs[0] else None)}
        if len(set(T.tolist())) < T.size:
            raise ValueError(f"steps: two runs of the setting alpha={c['alpha']}, beta={c['beta']}, M={c['M']} have "
                             "the same T; vary only steps within a setting (and give phase1/stages no grid)")
        if any(s["diverged"]) or any(s["diverged_linear"] or []):
            s["notes"].append("replicas diverged (counts per T in 'diverged', 'diverged_linear'): their mean risk is "
                              "NaN, and a window holding such a T is not fitted")
        if not c["alpha"] > c["beta"]:
            s["notes"].append("alpha <= beta: the linear-model form and the quadratic rate -(2b-2)/(a+b) are "
                              "stated for alpha > beta only (seed 003); quadfast checks neither there")
        if s["D_at_t_hi"] > c["M"] * (1 + 1e-9):
            s["notes"].append(f"M = {c['M']} is below the effective dimension D(t_hi) = {s['D_at_t_hi']:.0f}: "
                              "the T-law does not hold over the whole window")
        for model, key_, law in (("quadratic", "risk", "T_quadratic"), ("linear", "risk_linear", "T_linear")):
            if key_ not in runs[0]:
                continue
            y = np.array([float(r[key_][-1]) for r in runs]) - tail
            s[f"excess_{model}"] = y.tolist()
            try:
                f = theory.fit_loglog_slope(T, y, window=(lo, hi), level=opts["level"])
            except ValueError as exc:
                s["fits"][model] = {"note": f"no fit: {exc}"}
                continue
            s["fits"][model] = dict(f._asdict(), predicted=pred[law])
        settings.append(s)
    png = plot_qplr_scaling(settings, out / "qplr_scaling.png")
    return {"settings": settings, "figures": [png.name],
            "note": "each point is one run of T steps (its own schedule); y = final mean excess risk - "
                    "zeta(beta, M+1); the interval is nominal (theory.fit_loglog_slope)"}


register_experiment(Experiment("qplr-scaling", _qplr_scaling, options={
    "t_lo": Param("float", 8192.0, "fit window start in T (the first steps are phase I's start-up)", lo=0.0,
                  lo_open=True),
    "t_hi": Param("float", None, "fit window end in T (default: the largest T)", lo=0.0, lo_open=True),
    "level": Param("float", 0.95, "confidence level of the slope interval", lo=0.0, hi=1.0, lo_open=True, hi_open=True),
}, doc="QPLR excess risk against T for the quadratic and linear models, fitted against seed 003's exponents"))
