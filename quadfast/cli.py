"""Command line: ``quadfast run [CONFIG]``, ``quadfast sweep GRID``, ``quadfast plot RESULTS``,
``quadfast info``.

``quadfast run`` with no CONFIG runs the embedded default experiment (d = 2048,
beta = 0.5, alpha = 1, width = r), shows a progress bar, prints a table of risk and
alignments over time, and writes a self-describing result file (.npz) and a PNG plot.
With a CONFIG (a TOML file, or the name of a shipped one: ``quadfast run scaling``) it
runs that experiment's grid here, one run after the other, then draws its figures.
Ctrl-C writes a checkpoint; ``--resume`` continues it bit for bit. ``quadfast sweep``
runs a grid in local processes or on a Dask cluster (``--scheduler``), skipping the runs
already done. Every error is one line, without a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULTS = dict(d=2048, beta=0.5, alpha=1.0, width=None, lr_d=1e-3, t_max=1.5, batch=1, seed=0, noise=0.0,
                dtype="float64", records=40)


class CliError(Exception):
    """An error reported as one line, without a traceback."""


def _h(text: str, key: str) -> str:
    return f"{text} (default: {DEFAULTS[key]})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quadfast", description="Fast simulation of SGD in quadratic neural networks.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment: the default Stiefel SGD run, or the grid of CONFIG",
                       description="Without CONFIG: one Stiefel online-SGD run set by the flags below. With CONFIG "
                                   "(a TOML file or a shipped name: " + ", ".join(_shipped()) + "): that experiment, "
                                   "run by run in this process; the flags --d ... --records then do not apply.")
    r.add_argument("config", nargs="?", default=None, help="experiment configuration (TOML path or shipped name)")
    r.add_argument("--d", type=int, default=None, help=_h("input dimension", "d"))
    r.add_argument("--beta", type=float, default=None, help=_h("teacher width exponent: r = ceil(d^beta)", "beta"))
    r.add_argument("--alpha", type=float, default=None, help=_h("decay: lambda_j ~ j^-alpha", "alpha"))
    r.add_argument("--width", type=int, default=None, help="student width N (default: r = ceil(d^beta))")
    r.add_argument("--lr-d", type=float, default=None, help=_h("step size times d (lr = lr_d / d)", "lr_d"))
    r.add_argument("--t-max", type=float, default=None, help=_h("final time t = lr * steps", "t_max"))
    r.add_argument("--steps", type=int, default=None, help="number of SGD steps (instead of --t-max)")
    r.add_argument("--batch", type=int, default=None, help=_h("samples per step", "batch"))
    r.add_argument("--seed", type=int, default=None, help=_h("seed of the start and of every sample", "seed"))
    r.add_argument("--noise", type=float, default=None, help=_h("label noise sigma", "noise"))
    r.add_argument("--dtype", choices=["float64", "float32"], default=None,
                   help=_h("precision of weights, samples and kernel arithmetic", "dtype"))
    r.add_argument("--records", type=int, default=None, help=_h("record points (log-spaced)", "records"))
    r.add_argument("--out", type=Path, default=None,
                   help="output folder (default: quadfast-results, or quadfast-results/<name>-<time> with CONFIG)")
    r.add_argument("--name", default=None, help="file stem (default: run-<timestamp>)")
    r.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--reduced", action="store_true", help="CONFIG at its reduced (test-suite) size")
    r.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="continue an interrupted run: the checkpoint (.ckpt) of a default run, or the output "
                        "folder of a CONFIG run (as printed on Ctrl-C)")
    s = sub.add_parser("sweep", help="run the grid of a configuration in local processes or on Dask",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Runs every run of GRID not already finished in --out (rerun the same command "
                                   "after an interruption or a failure: finished runs are skipped, checkpointed "
                                   "ones resume, failed ones are retried).")
    s.add_argument("grid", help="configuration (TOML path or shipped name)")
    s.add_argument("--out", type=Path, default=None, help="sweep folder (default: quadfast-results/<name>)")
    s.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask distributed scheduler, e.g. tcp://10.0.0.1:8786")
    s.add_argument("--reduced", action="store_true", help="the configuration at its reduced (test-suite) size")
    s.add_argument("--restart-checkpointed", action="store_true", help="run checkpointed runs from scratch")
    s.add_argument("--no-plot", action="store_true", help="do not draw the experiment's figures")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    pl = sub.add_parser("plot", help="draw figures from results (a result .npz, or a run/sweep folder)")
    pl.add_argument("results", type=Path, help="a result file (.npz) or an output folder of run/sweep")
    pl.add_argument("--out", type=Path, default=None, help="folder for the figures (default: next to the results)")
    sub.add_parser("info", help="versions, threads, CPU features and build of this installation")
    return p


def _shipped():
    from .config import shipped

    return shipped()


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".quadfast-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CliError(f"--out: cannot write to {folder}: {exc.strerror or exc}") from None


def _table(res, rows: int = 12) -> str:
    steps, time_, risk, align = res["steps"], res["time"], res["risk"], res["alignment"]
    r = align.shape[1]
    n = len(steps)
    cols = sorted({0, 1, min(3, r - 1), r // 2, r - 1})
    idx = np.unique(np.round(np.linspace(0, n - 1, min(rows, n))).astype(int))
    head = f"{'steps':>11} {'time':>9} {'risk':>8} " + " ".join(f"{'A_' + str(j + 1):>7}" for j in cols) + f" {'mean A':>7}"
    lines = [head, "-" * len(head)]
    for i in idx:
        a = align[i]
        lines.append(f"{int(steps[i]):>11d} {time_[i]:>9.3g} {risk[i]:>8.4f} "
                     + " ".join(f"{a[j]:>7.3f}" for j in cols) + f" {a.mean():>7.3f}")
    return "\n".join(lines)



_RUN_FLAGS = ("d", "beta", "alpha", "width", "lr_d", "t_max", "steps", "batch", "seed", "noise", "dtype", "records")


def _config_of(arg: str, reduced: bool):
    from .config import ConfigError, load_config, shipped, shipped_path

    p = Path(arg)
    if not p.exists() and not p.suffix and arg in shipped():
        p = shipped_path(arg)
    try:
        cfg = load_config(p)
        return cfg.reduce() if reduced else cfg
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _default_params(args) -> dict:
    given = {k: getattr(args, k) for k in _RUN_FLAGS if getattr(args, k) is not None}
    if args.steps is not None:
        given.pop("t_max", None)
    return given


def cmd_run(args) -> int:
    if args.config is not None:
        return _run_config(args)
    from .procedures import Interrupted, get_procedure, load_checkpoint

    proc = get_procedure("stiefel-sgd")
    out = args.out or Path("quadfast-results")
    if args.resume is not None:
        try:
            params = load_checkpoint(args.resume)["params"]
        except ValueError as exc:
            raise CliError(f"--resume: {exc}") from None
        out, stem, ckpt = args.resume.parent, args.resume.stem, args.resume
    else:
        try:
            params = proc.resolve(_default_params(args))
        except (ValueError, TypeError) as exc:
            raise CliError(str(exc)) from None
        stem = args.name or time.strftime("run-%Y%m%d-%H%M%S")
        ckpt = out / f"{stem}.ckpt"
    _check_writable(out)
    print(f"quadfast run: d={params['d']}, r={params['r']}, width={params['width']}, alpha={params['alpha']}, "
          f"lr*d={params['lr_d']:g}, batch={params['batch']}, steps={params['steps']}, dtype={params['dtype']}, "
          f"seed={params['seed']}" + (f" (resuming {ckpt})" if args.resume else ""))
    spec = {"run_id": stem, "label": stem, "procedure": "stiefel-sgd", "params": params}
    try:
        arrays, info = proc.execute(params, progress=not args.no_progress, checkpoint=ckpt,
                                    resume=args.resume is not None)
    except Interrupted as exc:
        print(f"\nquadfast: interrupted at step {exc.steps_done}: checkpoint written to {exc.checkpoint}; "
              f"continue with: quadfast run --resume {exc.checkpoint}", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    path = _save_run_file(out, stem, spec, arrays, info)
    try:
        ckpt.unlink()
    except FileNotFoundError:
        pass
    from .results import load_result

    res = load_result(path)
    print()
    print(_table(res))
    t = res.meta["timings"]
    print(f"\n{t['steps_done']} steps in {t['seconds']:.1f} s ({1e6 * t['seconds_per_step']:.1f} us/step); "
          f"max|W^T W - I| = {res['orth_error'].max():.1e}")
    print(f"result: {path}")
    if not args.no_plot:
        from .plotting import plot_run

        png = plot_run(res, path.with_suffix(".png"))
        print(f"plot:   {png}")
    return 0


def _save_run_file(out, stem, spec, arrays, info):
    from .procedures import get_procedure
    from .results import machine_info, save_result

    info = dict(info)
    meta = {"kind": get_procedure(spec["procedure"]).kind, "procedure": spec["procedure"], "run_id": stem,
            "label": stem, "config": spec["params"], "seed": spec["params"]["seed"], "machine": machine_info(),
            "interrupted": False, "timings": info.pop("timings")}
    meta.update(info)
    return save_result(out / f"{stem}.npz", arrays, meta)


def _given_run_flags(args):
    return [k for k in _RUN_FLAGS if getattr(args, k) is not None]


def _run_config(args) -> int:
    flags = _given_run_flags(args)
    if flags or args.name:
        bad = flags[0] if flags else "name"
        raise CliError(f"--{bad.replace('_', '-')}: applies to the default run only; with CONFIG set it in the "
                       f"configuration's [params]")
    cfg = _config_of(args.config, args.reduced)
    out = args.resume or args.out or Path("quadfast-results") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.resume is not None and not (args.resume / "sweep.json").is_file():
        raise CliError(f"--resume: {args.resume} is not the output folder of a quadfast run (no sweep.json)")
    return _sweep_and_analyse(cfg, out, workers=1, scheduler=None, progress=not args.no_progress,
                              run_progress=not args.no_progress, resume=True, plot=not args.no_plot,
                              again=f"quadfast run {args.config}{' --reduced' if args.reduced else ''} --resume {out}")


def cmd_sweep(args) -> int:
    cfg = _config_of(args.grid, args.reduced)
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers: expected a positive integer, got {args.workers}")
    if args.scheduler is not None and "://" not in args.scheduler:
        raise CliError(f"--scheduler: expected an address like tcp://host:8786, got {args.scheduler!r}")
    out = args.out or Path("quadfast-results") / cfg.name
    again = f"quadfast sweep {args.grid}{' --reduced' if args.reduced else ''} --out {out}"
    return _sweep_and_analyse(cfg, out, workers=args.workers, scheduler=args.scheduler, progress=not args.no_progress,
                              run_progress=False, resume=not args.restart_checkpointed, plot=not args.no_plot,
                              again=again)


def _sweep_and_analyse(cfg, out, *, workers, scheduler, progress, run_progress, resume, plot, again) -> int:
    from .sweep import SweepError, run_sweep

    print(f"quadfast: {cfg.experiment} ({cfg.procedure}, {len(cfg.runs())} runs) -> {out}")
    try:
        rep = run_sweep(cfg, out, workers=workers, scheduler=scheduler, progress=progress, run_progress=run_progress,
                        resume=resume, log=lambda m: print(f"quadfast: {m}", file=sys.stderr))
    except SweepError as exc:
        raise CliError(str(exc)) from None
    n_ok = len(rep.done) + len(rep.skipped)
    print(f"{len(rep.done)} runs done, {len(rep.skipped)} already done, {len(rep.failed)} failed "
          f"({rep.seconds:.1f} s); table: {rep.table}")
    if rep.interrupted:
        print(f"quadfast: interrupted: {n_ok} of {len(rep.runs)} runs finished and kept"
              + (f", {len(rep.checkpointed)} checkpointed" if rep.checkpointed else "")
              + f"; continue with: {again}", file=sys.stderr)
        return 130
    if plot and n_ok:
        _analyse_folder(out, out)
    if rep.failed:
        print(f"quadfast: {len(rep.failed)} of {len(rep.runs)} runs failed (errors in {out / 'runs'}/*.error.txt); "
              f"rerun to retry them: {again}", file=sys.stderr)
        return 1
    return 0


def _analyse_folder(folder: Path, dest: Path) -> dict | None:
    import json

    from .experiments import analyse
    from .results import load_result

    man = json.loads((folder / "sweep.json").read_text())
    cfg = man["config"]
    paths = [folder / "runs" / f"{r['run_id']}.npz" for r in man["runs"]]
    results = [load_result(p) for p in paths if p.is_file()]
    if not results:
        raise CliError(f"RESULTS: {folder} holds no finished run yet")
    try:
        summary = analyse(cfg["experiment"], results, cfg.get("analysis", {}), dest)
    except (ValueError, TypeError) as exc:
        print(f"quadfast: warning: the {cfg['experiment']} analysis failed on these results: {exc}", file=sys.stderr)
        return None
    for f in summary.get("figures", []):
        print(f"figure: {dest / f}")
    print(f"summary: {dest / 'summary.json'}")
    return summary


def cmd_plot(args) -> int:
    from .plotting import plot_qplr_run, plot_run
    from .results import load_result

    src = args.results
    if not src.exists():
        raise CliError(f"RESULTS: {src} does not exist")
    dest = args.out or (src if src.is_dir() else src.parent)
    _check_writable(dest)
    if src.is_dir():
        if (src / "sweep.json").is_file():
            _analyse_folder(src, dest)
            return 0
        files = sorted(src.glob("*.npz"))
        if not files:
            raise CliError(f"RESULTS: {src} holds no result files (.npz) and no sweep.json")
    else:
        files = [src]
    for f in files:
        try:
            res = load_result(f)
        except (OSError, ValueError) as exc:
            raise CliError(f"RESULTS: {f}: {exc}") from None
        draw = plot_qplr_run if res.meta.get("kind") == "qplr-run" else plot_run
        print(f"figure: {draw(res, dest / (f.stem + '.png'))}")
    return 0


def cmd_info(args) -> int:
    from . import _threads
    from .results import machine_info

    info = machine_info()
    info["threads"] = _threads.default_threads()
    info["cpus_available"] = _threads.available_cpus()
    for var in ("QUADFAST_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "QUADFAST_ISA"):
        info[var] = os.environ.get(var, "(unset)")
    try:
        import numba

        info["numba"] = f"{numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads)"
    except ImportError:  # pragma: no cover
        info["numba"] = "not installed"
    from . import _ext

    info["build"] = f"{_ext.core.__file__} (ISA variants available: {', '.join(_ext.available())})"
    for k, v in info.items():
        print(f"{k:>20}: {v}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "sweep": cmd_sweep, "plot": cmd_plot, "info": cmd_info}[args.command](args)
    except CliError as exc:
        print(f"quadfast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a run (loading, plotting): nothing to checkpoint
        print("\nquadfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
