"""Run the grid of a configuration: in this process, in local processes, or on Dask.

Output folder layout (one folder per configuration)::

    OUT/sweep.json          the configuration and the list of runs (ids, parameters)
    OUT/runs/<id>.npz       one self-describing result per finished run (quadfast.results)
    OUT/runs/<id>.ckpt      checkpoint of a run interrupted by Ctrl-C (local runs only)
    OUT/runs/<id>.error.txt the error of a failed run (removed when it later succeeds)
    OUT/table.csv           tidy table: one row per run and record point
    OUT/*.png, summary.txt  the experiment's figures and numbers (quadfast.experiments)

A run's id is a hash of its procedure and resolved parameters, so running the same sweep
again skips every run whose result file exists, resumes checkpointed runs, and retries
failed ones. Results are written by the coordinating process, each atomically (write to a
temporary name, then rename), so an interrupted sweep never loses or truncates a finished
result. A run that raises is reported with its error and does not stop the others.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .procedures import Interrupted, get_procedure
from .results import _jsonable, load_result, machine_info, save_result

__all__ = ["SweepError", "SweepReport", "run_sweep", "run_id", "write_table", "execute_spec", "read_table"]

TABLE_COLUMNS = ["run_id", "label", "procedure", "record", "steps", "samples", "time", "flops", "risk", "flow_risk",
                 "alignment_mean", "learned"]


class SweepError(Exception):
    """A problem that stops a sweep before it starts (reported as one line)."""


@dataclass
class SweepReport:
    """What a sweep did. ``failed`` maps run id -> one-line error; ``checkpointed`` lists
    runs interrupted with a checkpoint (they resume on the next start)."""

    out: Path
    runs: list
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    checkpointed: list = field(default_factory=list)
    interrupted: bool = False
    table: Path | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failed and not self.interrupted and len(self.done) + len(self.skipped) == len(self.runs)


def run_id(procedure: str, params: dict) -> str:
    """Stable id of a run: the procedure and a hash of its resolved parameters."""
    blob = json.dumps({"procedure": procedure, "params": _jsonable(params)}, sort_keys=True)
    return f"{procedure}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def _label(params: dict, keys) -> str:
    return ",".join(f"{k}={params[k]}" for k in keys) or "run"


def specs_of(config) -> list[dict]:
    """The runs of a configuration as specs: ``{run_id, label, procedure, params}``."""
    out = []
    for p in config.runs():
        out.append({"run_id": run_id(config.procedure, p), "label": _label(p, list(config.grid)),
                    "procedure": config.procedure, "params": p})
    return out


# ----------------------------------------------------------------------------- workers
_IN_RUN = False
_STOPPED = False


def _sigint_in_worker(signum, frame):
    # a worker interrupts the run in flight (which then writes its checkpoint), starts
    # no further run, and does not die with a traceback when idle
    global _STOPPED
    _STOPPED = True
    if _IN_RUN:
        raise KeyboardInterrupt


def _worker_init():
    signal.signal(signal.SIGINT, _sigint_in_worker)
    # one BLAS thread per worker process: the pool supplies the parallelism
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def execute_spec(spec: dict, checkpoint_dir=None, resume: bool = True, progress: bool = False, stop_file=None) -> dict:
    """Execute one run; never raises for a failing run (returns its error instead).

    Returns ``{"status": "ok", "arrays", "info", "seconds"}``, ``{"status": "error",
    "error", "traceback"}`` or ``{"status": "interrupted", "checkpoint"}``. This is the
    function sent to local worker processes and to Dask workers (it is importable and
    takes and returns plain picklable data). If ``stop_file`` exists the run is not
    started (a sweep being interrupted returns its queued runs this way).
    """
    global _IN_RUN
    if _STOPPED or (stop_file is not None and Path(stop_file).exists()):
        return {"status": "interrupted", "checkpoint": None}
    proc = get_procedure(spec["procedure"])
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{spec['run_id']}.ckpt"
    t0 = time.perf_counter()
    _IN_RUN = True
    try:
        arrays, info = proc.execute(spec["params"], progress=progress, checkpoint=ckpt, resume=resume)
    except Interrupted as exc:
        return {"status": "interrupted", "checkpoint": str(exc.checkpoint), "steps_done": exc.steps_done}
    except KeyboardInterrupt:
        return {"status": "interrupted", "checkpoint": None}
    except Exception as exc:  # a failing run is reported, the sweep goes on
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        _IN_RUN = False
    return {"status": "ok", "arrays": arrays, "info": info, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- output
def _check_out(out: Path) -> None:
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        probe = out / "runs" / ".quadfast-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SweepError(f"--out: cannot write to {out}: {exc.strerror or exc}") from None


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _save_run(out: Path, spec: dict, res: dict, config) -> Path:
    proc = get_procedure(spec["procedure"])
    info = dict(res["info"])
    meta = {"kind": proc.kind, "procedure": spec["procedure"], "run_id": spec["run_id"], "label": spec["label"],
            "experiment": config.experiment if config is not None else None,
            "sweep": config.name if config is not None else None,
            "config": spec["params"], "seed": spec["params"].get("seed"), "machine": machine_info(),
            "timings": info.pop("timings", {"seconds": res.get("seconds")})}
    meta.update(info)
    path = save_result(out / "runs" / f"{spec['run_id']}.npz", res["arrays"], meta)
    for stale in (out / "runs" / f"{spec['run_id']}.ckpt", out / "runs" / f"{spec['run_id']}.error.txt"):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass
    return path


def _rows_of(result) -> list[dict]:
    meta = result.meta
    p = meta.get("config", {})
    scal = {k: v for k, v in p.items() if isinstance(v, (int, float, str, bool)) or v is None}
    if meta.get("kind") == "qplr-run":
        return _qplr_rows(result, meta, scal)
    n = len(result["time"])
    rows = []
    for i in range(n):
        a = result["alignment"][i]
        row = {"run_id": meta.get("run_id"), "label": meta.get("label"), "procedure": meta.get("procedure"),
               "record": i, "time": float(result["time"][i]), "risk": float(result["risk"][i]),
               "alignment_mean": float(np.mean(a)), "learned": int(np.sum(a > 0.5))}
        for k in ("steps", "samples", "flops", "flow_risk"):
            if k in result:
                v = result[k][i]
                row[k] = int(v) if k in ("steps", "samples") else float(v)
        for k, v in scal.items():
            row.setdefault(k, v)
        rows.append(row)
    return rows


def _qplr_rows(result, meta, scal) -> list[dict]:
    """Rows of a ``qplr`` result: the replica-mean excess risks of both models per record,
    the floor zeta(beta, M+1) (``risk_floor``) and the run's length ``T`` (``steps`` is
    the record's step)."""
    rows = []
    for i in range(len(result["steps"])):
        row = {"run_id": meta.get("run_id"), "label": meta.get("label"), "procedure": meta.get("procedure"),
               "record": i, "steps": int(result["steps"][i]), "samples": int(result["samples"][i]),
               "risk": float(result["risk"][i]), "risk_floor": float(result["tail"]), "T": scal.get("steps")}
        if "risk_linear" in result:
            row["risk_linear"] = float(result["risk_linear"][i])
        for k, v in scal.items():
            row.setdefault(k, v)
        rows.append(row)
    return rows


def write_table(paths, table: Path) -> Path:
    """Tidy CSV of result files: one row per run and record point.

    Columns: ``run_id, label, procedure, record, steps, samples, time, flops, risk,
    flow_risk, alignment_mean, learned`` (``learned`` = number of features with
    ``A_j > 1/2``; a ``qplr`` run has ``risk_linear`` and ``risk_floor`` instead of the
    time, flop and alignment columns), then every scalar parameter of the run. Floats are written with
    ``repr`` (they read back exactly); missing values are empty.
    """
    rows = []
    for p in paths:
        rows.extend(_rows_of(load_result(p)))
    extra = sorted({k for r in rows for k in r} - set(TABLE_COLUMNS))
    cols = TABLE_COLUMNS + extra
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in r.items()})
    table = Path(table)
    _atomic_text(table, buf.getvalue())
    return table


def read_table(path) -> list[dict]:
    """Read a table written by :func:`write_table` without pandas (``pandas.read_csv`` works too)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _done(out: Path, spec: dict) -> bool:
    p = out / "runs" / f"{spec['run_id']}.npz"
    if not p.is_file():
        return False
    try:
        return load_result(p).meta.get("config") == _jsonable(spec["params"])
    except (OSError, ValueError, KeyError):  # unreadable: run it again
        return False


# ----------------------------------------------------------------------------- the sweep
def run_sweep(config, out, *, workers: int | None = None, scheduler: str | None = None, progress: bool = True,
              run_progress: bool = False, resume: bool = True, log=print) -> SweepReport:
    """Run every run of ``config`` not already done in ``out``; see the module docstring.

    Parameters
    ----------
    config : quadfast.config.Config
    out : path
        The sweep's folder (created).
    workers : int, optional
        Local worker processes (default: ``os.cpu_count()``); ``1`` runs in this process
        (then Ctrl-C checkpoints the run in flight and ``run_progress`` shows its bar).
    scheduler : str, optional
        Address of a running Dask distributed scheduler (``tcp://host:8786``): the runs
        are submitted there instead (needs ``pip install quadfast[dask]``). Results come
        back to this process, which writes them, so workers need no shared filesystem.
    progress : bool
        A progress bar over runs (tqdm) with an ETA.
    resume : bool
        Continue checkpointed runs (default). With False they restart from scratch.

    Returns
    -------
    SweepReport
        Never raises for a failing run. KeyboardInterrupt is caught: the report says
        ``interrupted`` and lists the checkpoints; finished results and the table are kept.
    """
    out = Path(out)
    _check_out(out)
    specs = specs_of(config)
    manifest = {"format": "quadfast-sweep/1", "config": config.to_dict(), "source": config.source,
                "runs": [{"run_id": s["run_id"], "label": s["label"], "params": s["params"]} for s in specs]}
    _atomic_text(out / "sweep.json", json.dumps(_jsonable(manifest), indent=1))
    report = SweepReport(out=out, runs=[s["run_id"] for s in specs])
    pending = []
    for s in specs:
        if _done(out, s):
            report.skipped.append(s["run_id"])
        else:
            pending.append(s)
    t0 = time.perf_counter()
    bar = None
    if progress and pending:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), unit="run", desc=f"sweep {config.name}", leave=True)

    def handle(spec, res):
        status = res["status"]
        if status == "ok":
            _save_run(out, spec, res, config)
            report.done.append(spec["run_id"])
        elif status == "error":
            report.failed[spec["run_id"]] = res["error"]
            _atomic_text(out / "runs" / f"{spec['run_id']}.error.txt",
                         f"{spec['label']}\n{res['error']}\n\n{res.get('traceback', '')}")
            log(f"run {spec['label']} ({spec['run_id']}) failed: {res['error']}")
        else:
            report.interrupted = True
            if res.get("checkpoint"):
                report.checkpointed.append(spec["run_id"])
        if bar is not None and status != "interrupted":
            bar.update(1)

    try:
        if scheduler is not None:
            _run_dask(pending, out, scheduler, handle)
        elif workers == 1 or (workers is None and len(pending) <= 1):
            for spec in pending:
                res = execute_spec(spec, checkpoint_dir=out / "runs", resume=resume, progress=run_progress)
                handle(spec, res)
                if res["status"] == "interrupted":
                    break
        else:
            _run_local(pending, out, workers or os.cpu_count() or 1, resume, handle)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        if bar is not None:
            bar.close()
        finished = [out / "runs" / f"{s['run_id']}.npz" for s in specs if (out / "runs" / f"{s['run_id']}.npz").is_file()]
        report.table = write_table(finished, out / "table.csv")
        report.seconds = time.perf_counter() - t0
    return report


def _run_local(pending, out, workers, resume, handle):
    import multiprocessing

    # spawn, not fork: forking a process that runs BLAS/tqdm threads can deadlock (and
    # Python >= 3.12 warns about it); workers import quadfast afresh
    ex = ProcessPoolExecutor(max_workers=min(workers, len(pending)), initializer=_worker_init,
                             mp_context=multiprocessing.get_context("spawn"))
    stop = out / "runs" / ".stop"
    stop.unlink(missing_ok=True)
    futs = {}
    try:
        futs = {ex.submit(execute_spec, s, out / "runs", resume, False, stop): s for s in pending}
        left = set(futs)
        while left:
            finished, left = wait(left, return_when=FIRST_COMPLETED)
            for f in finished:
                handle(futs[f], f.result())
    except KeyboardInterrupt:
        # stop what has not started (the pool pre-queues a few runs: they see the stop
        # file); ask the runs in flight to checkpoint, and keep what they send back (a run
        # that just finished is saved, not lost)
        stop.touch()
        for f in futs:
            f.cancel()
        for pid in list(getattr(ex, "_processes", {}) or {}):
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        for f, s in futs.items():
            if not f.cancelled():
                try:
                    res = f.result()
                except BaseException:  # a worker died: nothing to save
                    continue
                if not (out / "runs" / f"{s['run_id']}.npz").is_file() or res["status"] != "ok":
                    handle(s, res)
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        stop.unlink(missing_ok=True)


def _run_dask(pending, out, scheduler, handle):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SweepError("--scheduler: Dask is not installed; pip install 'quadfast[dask]'") from None
    try:
        client = Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SweepError(f"--scheduler: cannot connect to {scheduler}: {exc}") from None
    try:
        futs = {}
        for s in pending:
            f = client.submit(execute_spec, s, None, False, key=f"quadfast-{s['run_id']}-{time.time_ns()}", pure=False)
            futs[f.key] = (f, s)
        try:
            for f in as_completed([f for f, _ in futs.values()], loop=client.loop):
                spec = futs[f.key][1]
                try:
                    res = f.result()
                except Exception as exc:  # the worker died or the task was lost
                    res = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
                handle(spec, res)
        except KeyboardInterrupt:
            client.cancel([f for f, _ in futs.values()])
            raise
    finally:
        client.close()
