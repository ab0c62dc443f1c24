"""Command line: ``quadfast run`` (one Stiefel SGD experiment) and ``quadfast info``.

``quadfast run`` with no arguments runs the embedded default experiment (d = 2048,
beta = 0.5, alpha = 1, width = r), shows a progress bar, prints a table of risk and
alignments over time, and writes a self-describing result file (.npz) and a PNG plot.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULTS = dict(d=2048, beta=0.5, alpha=1.0, width=None, lr_d=1e-3, t_max=1.5, batch=1, seed=0, noise=0.0,
                dtype="float64", records=40)


class CliError(Exception):
    """An error reported as one line, without a traceback."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quadfast", description="Fast simulation of SGD in quadratic neural networks.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run one Stiefel online-SGD experiment (defaults: d=2048, beta=0.5, alpha=1)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--d", type=int, default=DEFAULTS["d"], help="input dimension")
    r.add_argument("--beta", type=float, default=DEFAULTS["beta"], help="teacher width exponent: r = ceil(d^beta)")
    r.add_argument("--alpha", type=float, default=DEFAULTS["alpha"], help="decay: lambda_j ~ j^-alpha")
    r.add_argument("--width", type=int, default=None, help="student width N (default: r = ceil(d^beta))")
    r.add_argument("--lr-d", type=float, default=DEFAULTS["lr_d"], help="step size times d (lr = lr_d / d)")
    r.add_argument("--t-max", type=float, default=DEFAULTS["t_max"], help="final time t = lr * steps")
    r.add_argument("--steps", type=int, default=None, help="number of SGD steps (overrides --t-max)")
    r.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="samples per step")
    r.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the start and of every sample")
    r.add_argument("--noise", type=float, default=DEFAULTS["noise"], help="label noise sigma")
    r.add_argument("--dtype", choices=["float64", "float32"], default=DEFAULTS["dtype"],
                   help="precision of weights, samples and kernel arithmetic")
    r.add_argument("--records", type=int, default=DEFAULTS["records"], help="record points (log-spaced)")
    r.add_argument("--out", type=Path, default=Path("quadfast-results"), help="output folder")
    r.add_argument("--name", default=None, help="file stem (default: run-<timestamp>)")
    r.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("info", help="versions, CPU features and build of this installation")
    return p


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".quadfast-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CliError(f"--out: cannot write to {folder}: {exc.strerror or exc}") from None


def _table(traj, rows: int = 12) -> str:
    r = traj.alignment.shape[1]
    cols = sorted({0, 1, min(3, r - 1), r // 2, r - 1})
    idx = np.unique(np.round(np.linspace(0, len(traj) - 1, min(rows, len(traj)))).astype(int))
    head = f"{'steps':>11} {'time':>9} {'risk':>8} " + " ".join(f"{'A_' + str(j + 1):>7}" for j in cols) + f" {'mean A':>7}"
    lines = [head, "-" * len(head)]
    for i in idx:
        a = traj.alignment[i]
        lines.append(f"{traj.steps[i]:>11d} {traj.time[i]:>9.3g} {traj.risk[i]:>8.4f} "
                     + " ".join(f"{a[j]:>7.3f}" for j in cols) + f" {a.mean():>7.3f}")
    return "\n".join(lines)


def cmd_run(args) -> int:
    import quadfast as qf

    from . import riccati
    from .plotting import plot_run
    from .results import machine_info, save_result

    try:
        teacher = qf.Teacher.power_law(args.d, args.beta, args.alpha, noise=args.noise)
        width = teacher.r if args.width is None else args.width
        if not args.lr_d > 0:
            raise ValueError(f"lr_d: expected a number > 0, got {args.lr_d}")
        lr = args.lr_d / args.d
        if args.steps is None and not args.t_max > 0:
            raise ValueError(f"t_max: expected a time > 0, got {args.t_max}")
        steps = args.steps if args.steps is not None else int(round(args.t_max / lr))
        if steps < 1:
            raise ValueError(f"steps: expected at least 1 SGD step, got {steps} "
                             f"(t_max = {args.t_max}, lr = {lr:g})")
        sim = qf.StiefelSGD(teacher, width, lr=lr, batch=args.batch, seed=args.seed, dtype=args.dtype)
        # log-spaced over the last three decades of the run, where features emerge
        first = max(1, steps // 1000)
        record = np.unique(np.concatenate([[0], np.round(np.geomspace(first, max(steps, 1), max(args.records, 2)))]).astype(np.int64))
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    _check_writable(args.out)
    stem = args.name or time.strftime("run-%Y%m%d-%H%M%S")
    flow_start = riccati.start_from_simulator(sim)
    print(f"quadfast run: d={args.d}, r={teacher.r}, width={width}, alpha={args.alpha}, lr*d={args.lr_d}, "
          f"batch={args.batch}, steps={steps}, dtype={args.dtype}, seed={args.seed}")
    t0 = time.perf_counter()
    interrupted = False
    try:
        traj = sim.run(steps, record=record, progress=not args.no_progress)
    except KeyboardInterrupt:
        interrupted = True
        traj = sim.last_trajectory
        print("\ninterrupted: saving what was recorded so far", file=sys.stderr)
        if traj is None:
            return 130
    elapsed = time.perf_counter() - t0
    flow = riccati.risk_curve(flow_start[0], traj.time, factor=flow_start[1])
    config = dict(d=args.d, beta=args.beta, alpha=args.alpha, r=teacher.r, width=width, lr=lr, lr_d=args.lr_d,
                  steps=steps, batch=args.batch, seed=args.seed, noise=args.noise, dtype=args.dtype)
    meta = dict(kind="stiefel-run", config=config, seed=args.seed, machine=machine_info(), interrupted=interrupted,
                timings=dict(seconds=elapsed, seconds_per_step=elapsed / max(1, sim.steps_done),
                             steps_done=sim.steps_done),
                reortho=sim.reortho_stats,
                arrays=dict(steps="SGD steps at each record", time="t = lr * steps",
                            risk="1 - tr((G Lambda)^2)/tr(Lambda^2)", alignment="A_j = ||W^T theta_j||^2 (records x r)",
                            orth_error="max|W^T W - I|", coef="teacher lambda_j",
                            flow_risk="population-flow risk from the same W0 at flow_time"))
    arrays = dict(traj.to_dict(), coef=teacher.coef, flow_time=traj.time, flow_risk=flow)
    path = save_result(args.out / f"{stem}.npz", arrays, meta)
    print()
    print(_table(traj))
    print(f"\n{sim.steps_done} steps in {elapsed:.1f} s ({1e6 * elapsed / max(1, sim.steps_done):.1f} us/step); "
          f"max|W^T W - I| = {traj.orth_error.max():.1e}")
    print(f"result: {path}")
    if not args.no_plot:
        from .results import load_result

        png = plot_run(load_result(path), path.with_suffix(".png"))
        print(f"plot:   {png}")
    return 130 if interrupted else 0


def cmd_info(args) -> int:
    from .results import machine_info

    info = machine_info()
    for k, v in info.items():
        print(f"{k:>12}: {v}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        return cmd_info(args)
    except CliError as exc:
        print(f"quadfast: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
