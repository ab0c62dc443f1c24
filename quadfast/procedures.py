"""Registry of run procedures: what one run of an experiment executes.

A :class:`Procedure` has a name, a table of parameters (type, default, range, meaning)
and an ``execute`` function ``(params, *, progress, checkpoint, resume) -> (arrays, info)``
where ``arrays`` is a dict of NumPy arrays and ``info`` a JSON-able dict that goes into the
result's metadata. Procedures shipped here:

``stiefel-sgd``
    Online SGD on the Stiefel manifold (:class:`quadfast.StiefelSGD`, MODEL.md §1-3), with
    the population flow of MODEL.md §4 from the same start as an overlay.
``riccati``
    The population flow alone (:mod:`quadfast.riccati`), exact and cheap at any d.
``euclidean-sgd``
    Single-stage online SGD of the unconstrained 2-homogeneous student
    (:class:`quadfast.EuclideanSGD`, MODEL.md §1) from a small start, with its population
    flow (:func:`quadfast.euclid.population_flow`) from the same start as an overlay.
``two-stage``
    Seed 002's algorithm: ``stiefel-sgd`` (phase I), then the least-squares fine-tune of
    the radial part on fresh samples (:func:`quadfast.finetune`, phase II).
``qplr``
    Quadratically parameterised linear regression (:class:`quadfast.QPLR`, seed 003): R
    replicas of the quadratic model and the linear baseline on the same samples, with
    the exact excess risks at log-spaced record points.

Another simulator is wired in by
:func:`register_procedure` with its own parameter table; configurations, sweeps, the
results table and the CLI then work with it unchanged.
"""
from __future__ import annotations

import math
import numbers
import os
import pickle
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["Param", "Procedure", "Interrupted", "register_procedure", "get_procedure", "procedures"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``checkpoint`` is the checkpoint file written (or None)."""

    def __init__(self, checkpoint=None, steps_done=None):
        super().__init__(f"interrupted; checkpoint: {checkpoint}")
        self.checkpoint = checkpoint
        self.steps_done = steps_done


@dataclass(frozen=True)
class Param:
    """One parameter of a procedure.

    kind is ``"int"``, ``"float"``, ``"str"`` or ``"bool"``; ``default=None`` means "derived or
    unset" (described in ``doc``); ``lo``/``hi`` are inclusive bounds, ``lo_open`` makes
    ``lo`` exclusive; ``choices`` lists allowed strings.
    """

    kind: str
    default: Any
    doc: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()

    def check(self, value):
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
            value = int(value)
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value}")
        elif self.kind == "str":
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(f"expected one of {list(self.choices)}, got {value!r}")
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {type(value).__name__} {value!r}")
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            raise ValueError(f"expected a value {'>' if self.lo_open else '>='} {self.lo}, got {value}")
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            raise ValueError(f"expected a value {'<' if self.hi_open else '<='} {self.hi}, got {value}")
        return value


@dataclass
class Procedure:
    """A registered run procedure (see the module docstring)."""

    name: str
    params: dict
    execute: Callable
    derive: Callable
    kind: str
    doc: str = ""
    exclusive: tuple = field(default_factory=tuple)

    def check(self, key, value):
        """Validate one parameter value; raises naming nothing (the caller adds the key)."""
        if key not in self.params:
            raise ValueError(f"unknown parameter of procedure {self.name!r} (known: {', '.join(sorted(self.params))})")
        return self.params[key].check(value)

    def resolve(self, given: dict) -> dict:
        """Full parameters of one run: checked values, defaults, then derived values."""
        out = {}
        for k, v in given.items():
            try:
                out[k] = self.check(k, v)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{k}: {exc}") from None
        for group in self.exclusive:
            present = [k for k in group if k in given]
            if len(present) > 1:
                raise ValueError(f"{present[1]}: give only one of {', '.join(group)} (got {', '.join(present)})")
        for k, p in self.params.items():
            out.setdefault(k, p.default)
        return self.derive(out, given)


_REGISTRY: dict[str, Procedure] = {}


def register_procedure(proc: Procedure) -> Procedure:
    """Add a procedure to the registry (replacing one of the same name)."""
    _REGISTRY[proc.name] = proc
    return proc


def get_procedure(name: str) -> Procedure:
    """The registered procedure ``name``; KeyError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"procedure: unknown procedure {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def procedures() -> list[str]:
    return sorted(_REGISTRY)


# ----------------------------------------------------------------------------- shared
def _teacher_params():
    return {
        "d": Param("int", 2048, "input dimension", lo=2),
        "beta": Param("float", 0.5, "teacher width exponent, r = ceil(d^beta)", lo=0.0, hi=1.0, hi_open=True),
        "alpha": Param("float", 1.0, "decay of the teacher coefficients, lambda_j ~ j^-alpha", lo=0.0),
        "width": Param("int", None, "student width N (default r)", lo=1),
        "seed": Param("int", 0, "seed of the start (and of every sample for SGD)", lo=0),
        "records": Param("int", 40, "number of record points (log-spaced)", lo=2),
    }


def _derive_width(p):
    from .teacher import width_of

    p["r"] = width_of(p["d"], p["beta"])
    if p["width"] is None:
        p["width"] = p["r"]
    if p["width"] > p["d"]:
        raise ValueError(f"width: expected at most d = {p['d']}, got {p['width']}")
    return p


def _atomic_pickle(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


CHECKPOINT_FORMAT = "quadfast-checkpoint/1"


def load_checkpoint(path, params=None) -> dict:
    """Load a checkpoint written on Ctrl-C; with ``params``, check it belongs to them."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            state = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"checkpoint: cannot read {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {path} is not a quadfast checkpoint")
    if params is not None and state["params"] != params:
        diff = sorted(k for k in set(params) | set(state["params"]) if params.get(k) != state["params"].get(k))
        raise ValueError(f"checkpoint: {path} was written for other parameters (differs in {', '.join(diff)})")
    return state


# ----------------------------------------------------------------------------- stiefel-sgd
def _stiefel_params():
    p = _teacher_params()
    p.update({
        "lr_d": Param("float", None, "step size times d, lr = lr_d / d (default 1e-3)", lo=0.0, lo_open=True),
        "lr_const": Param("float", None, "lr = theory.learning_rate(d, alpha, r, const=lr_const) (MODEL.md §5)",
                          lo=0.0, lo_open=True),
        "t_max": Param("float", None, "final time t = lr * steps (default 1.5)", lo=0.0, lo_open=True),
        "steps": Param("int", None, "number of SGD steps", lo=1),
        "n_factor": Param("float", None, "samples n = n_factor * theory.sample_size(d, alpha, r) (MODEL.md §5)",
                          lo=0.0, lo_open=True),
        "batch": Param("int", 1, "samples per step", lo=1),
        "noise": Param("float", 0.0, "label noise sigma", lo=0.0),
        "dtype": Param("str", "float64", "precision", choices=("float64", "float32")),
        "record_from": Param("float", 1e-3, "first record point as a fraction of the run", lo=0.0, lo_open=True, hi=1.0),
        "flow": Param("bool", True, "overlay the population flow (MODEL.md §4) from the same start"),
    })
    return p


def _derive_stiefel(p, given):
    from . import theory

    p = _derive_width(p)
    d, r = p["d"], p["r"]
    if p["lr_const"] is not None:
        try:
            p["lr"] = theory.learning_rate(d, p["alpha"], r, const=p["lr_const"])
        except ValueError as exc:
            raise ValueError(f"lr_const: {exc}") from None
        p["lr_d"] = p["lr"] * d
    else:
        if p["lr_d"] is None:
            p["lr_d"] = 1e-3
        p["lr"] = p["lr_d"] / d
    if p["steps"] is None:
        if p["n_factor"] is not None:
            try:
                n = p["n_factor"] * theory.sample_size(d, p["alpha"], r)
            except ValueError as exc:
                raise ValueError(f"n_factor: {exc}") from None
            p["steps"] = max(1, int(math.ceil(n / p["batch"])))
        else:
            if p["t_max"] is None:
                p["t_max"] = 1.5
            p["steps"] = int(round(p["t_max"] / p["lr"]))
            if p["steps"] < 1:
                raise ValueError(f"t_max: {p['t_max']} is less than one step (lr = {p['lr']:g})")
    p["t_max"] = p["lr"] * p["steps"]
    return p


def _record_points(steps, records, record_from):
    first = max(1, int(steps * record_from))
    pts = np.round(np.geomspace(first, max(steps, first), records)).astype(np.int64)
    return np.unique(np.concatenate([[0], pts, [steps]]))


def _execute_stiefel(p, *, progress=False, checkpoint=None, resume=False, chunk_seconds=0.25):
    """Run Stiefel SGD with the parameters ``p`` (resolved); see :func:`get_procedure`.

    Ctrl-C (KeyboardInterrupt) during the run writes ``checkpoint`` (the simulator, whose
    pickle resumes bit-identically, and the rows recorded so far) and raises
    :class:`Interrupted`; ``resume=True`` continues from that file. The interrupted-and-resumed
    run equals an uninterrupted one bit for bit: the kernel is only ever split at progress
    chunks (multiples of ``sim.split_period``) and at record points, the same in both.
    """
    _, arrays, info, _ = _stiefel_session(p, progress, checkpoint, resume, chunk_seconds)
    return arrays, info


def _stiefel_session(p, progress, checkpoint, resume, chunk_seconds):
    """Phase I of ``stiefel-sgd`` and ``two-stage``: returns (sim, arrays, info, state),
    where ``state`` is what a checkpoint of the finished phase holds."""
    from . import riccati
    from .stiefel import StiefelSGD
    from .teacher import Teacher

    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        st = load_checkpoint(ckpt, p)
        sim, record, flow, rows, elapsed = st["sim"], st["record"], st["flow"], st["rows"], st["elapsed"]
        resumed_from = sim.steps_done
    else:
        teacher = Teacher.power_law(p["d"], p["beta"], p["alpha"], noise=p["noise"])
        sim = StiefelSGD(teacher, p["width"], lr=p["lr"], batch=p["batch"], seed=p["seed"], dtype=p["dtype"])
        record = _record_points(p["steps"], p["records"], p["record_from"])
        flow = None
        if p["flow"]:
            coef, start = riccati.start_from_simulator(sim)
            tt = p["lr"] * record.astype(np.float64)
            flow = {"flow_time": tt, "flow_risk": riccati.risk_curve(coef, tt, factor=start),
                    "flow_alignment": riccati.alignment_curve(coef, tt, factor=start)}
        rows, elapsed, resumed_from = [], 0.0, None
    rows, elapsed = _run_recorded(sim, p, record, flow, rows, elapsed, ckpt, progress, chunk_seconds)
    steps = np.array([r[0] for r in rows], dtype=np.int64)
    arrays = {
        "steps": steps, "time": p["lr"] * steps.astype(np.float64), "risk": np.array([r[1] for r in rows]),
        "alignment": np.array([r[2] for r in rows]), "orth_error": np.array([r[3] for r in rows]),
        "samples": steps * p["batch"], "flops": 6.0 * p["d"] * p["width"] * p["batch"] * steps.astype(np.float64),
        "coef": sim.teacher.coef,
    }
    if flow is not None:
        arrays.update(flow)
    info = {"timings": {"seconds": elapsed, "seconds_per_step": elapsed / max(1, sim.steps_done),
                        "steps_done": sim.steps_done},
            "reortho": sim.reortho_stats, "block": sim.block, "resumed_from": resumed_from,
            "arrays": {"steps": "SGD steps at each record", "time": "t = lr * steps", "samples": "steps * batch",
                       "flops": "6 d N batch steps (forward + gradient + update, multiply-adds x 2)",
                       "risk": "1 - tr((G Lambda)^2)/tr(Lambda^2)", "alignment": "A_j = ||W^T theta_j||^2 (records x r)",
                       "orth_error": "max|W^T W - I|", "coef": "teacher lambda_j",
                       "flow_risk": "population-flow risk from the same W0 at flow_time",
                       "flow_alignment": "population-flow alignment from the same W0 at flow_time"}}
    return sim, arrays, info, _sim_checkpoint(p, sim, record, flow, rows, elapsed)


def _sim_checkpoint(p, sim, record, flow, rows, elapsed) -> dict:
    """What a checkpoint of a simulator run holds (read back by ``load_checkpoint``)."""
    return {"format": CHECKPOINT_FORMAT, "params": p, "sim": sim, "record": record, "flow": flow, "rows": rows,
            "elapsed": elapsed}


def _run_recorded(sim, p, record, flow, rows, elapsed, ckpt, progress, chunk_seconds):
    """Run ``sim`` through the record points not yet in ``rows``; on Ctrl-C write the
    checkpoint ``ckpt`` (sim, record, flow, rows) and raise :class:`Interrupted`.  Returns
    the rows sorted by step and the elapsed seconds (both including earlier sessions)."""
    done = {int(r[0]) for r in rows}
    now = sim.steps_done
    todo = np.array([s for s in record if s >= now and int(s) not in done], dtype=np.int64)
    t0 = time.perf_counter()
    try:
        if todo.size:
            sim.run(int(todo[-1] - now), record=todo - now, progress=progress, chunk_seconds=chunk_seconds)
            rows.extend(_rows(sim.last_trajectory))
    except KeyboardInterrupt:
        if sim.last_trajectory is not None:
            rows.extend(_rows(sim.last_trajectory))
        if ckpt is None:
            raise
        _atomic_pickle(_sim_checkpoint(p, sim, record, flow, rows, elapsed + time.perf_counter() - t0), ckpt)
        raise Interrupted(ckpt, sim.steps_done) from None
    elapsed += time.perf_counter() - t0
    rows.sort(key=lambda r: r[0])
    return rows, elapsed


def _rows(traj):
    return [(int(traj.steps[i]), float(traj.risk[i]), np.array(traj.alignment[i]), float(traj.orth_error[i]))
            for i in range(len(traj))]


register_procedure(Procedure(
    name="stiefel-sgd", params=_stiefel_params(), execute=_execute_stiefel, derive=_derive_stiefel,
    kind="stiefel-run", exclusive=(("lr_d", "lr_const"), ("t_max", "steps", "n_factor")),
    doc="online SGD on the Stiefel manifold (quadfast.StiefelSGD) with the population-flow overlay"))


# ----------------------------------------------------------------------------- riccati
def _riccati_params():
    p = _teacher_params()
    p.update({
        "t_max": Param("float", 1.5, "final time t (SGD time units)", lo=0.0, lo_open=True),
        "t_min": Param("float", None, "first time (default t_max / 1000)", lo=0.0, lo_open=True),
        "start": Param("str", "haar", "start: 'haar' (the W0 StiefelSGD draws with the same seed, O(dN) memory) or "
                       "'typical' (the same law drawn without W, any d)", choices=("haar", "typical")),
    })
    return p


def _derive_riccati(p, given):
    p = _derive_width(p)
    if p["t_min"] is None:
        p["t_min"] = p["t_max"] / 1000
    if not p["t_min"] < p["t_max"]:
        raise ValueError(f"t_min: expected less than t_max = {p['t_max']}, got {p['t_min']}")
    if p["start"] == "typical" and p["d"] < p["r"] + p["width"]:
        raise ValueError(f"start: 'typical' needs d >= r + width = {p['r'] + p['width']}")
    return p


def _execute_riccati(p, *, progress=False, checkpoint=None, resume=False, chunk_seconds=None):
    """The population flow of MODEL.md §4 on a log-spaced time grid (plus t = 0)."""
    from . import riccati
    from .stiefel import haar_stiefel

    t0 = time.perf_counter()
    coef = riccati.teacher_coef(p["r"], p["alpha"])
    if p["start"] == "haar":
        start = riccati.start_from_W(haar_stiefel(p["d"], p["width"], p["seed"]), r=p["r"])
    else:
        start = riccati.typical_start(p["d"], p["width"], p["r"], rng=p["seed"])
    t = np.concatenate([[0.0], np.geomspace(p["t_min"], p["t_max"], p["records"])])
    arrays = {"time": t, "risk": riccati.risk_curve(coef, t, factor=start),
              "alignment": riccati.alignment_curve(coef, t, factor=start), "coef": coef}
    info = {"timings": {"seconds": time.perf_counter() - t0},
            "arrays": {"time": "t (SGD time units)", "risk": "flow risk", "alignment": "G_jj(t) (records x r)",
                       "coef": "teacher lambda_j"}}
    return arrays, info


register_procedure(Procedure(
    name="riccati", params=_riccati_params(), execute=_execute_riccati, derive=_derive_riccati, kind="riccati-run",
    doc="population flow (quadfast.riccati) from a Haar or typical start"))


# ----------------------------------------------------------------------------- euclidean-sgd
def _euclid_params():
    p = _teacher_params()
    p.update({
        "r": Param("int", None, "number of teacher features (default ceil(d^beta); give r or beta)", lo=1),
        "width": Param("int", None, "student width N (default r; may exceed d)", lo=1),
        "init_scale": Param("float", 1e-3, "scale of the small Gaussian start (quadfast.euclid.small_init)",
                            lo=0.0, lo_open=True),
        "lr_d": Param("float", 1e-3, "step size times d, lr = lr_d / d (keep lr_d well below the smallest "
                      "lambda_j to be learnt)", lo=0.0, lo_open=True),
        "t_max": Param("float", None, "final time t = lr * steps (default 1.5 x the predicted emergence time of "
                       "the last feature, quadfast.euclid.predicted_emergence)", lo=0.0, lo_open=True),
        "steps": Param("int", None, "number of SGD steps", lo=1),
        "batch": Param("int", 1, "samples per step", lo=1),
        "noise": Param("float", 0.0, "label noise sigma", lo=0.0),
        "dtype": Param("str", "float64", "precision", choices=("float64", "float32")),
        "block": Param("int", None, "steps per block of the blocked engine (default quadfast.euclid.default_block)",
                       lo=1),
        "threads": Param("int", None, "threads of the blocked engine (default: QUADFAST_NUM_THREADS, "
                         "OMP_NUM_THREADS, else the CPUs); results do not depend on it", lo=1, hi=4096),
        "spacing": Param("str", "linear", "record points evenly spaced in steps ('linear') or log-spaced ('log')",
                         choices=("linear", "log")),
        "record_from": Param("float", 1e-3, "first record point as a fraction of the run (spacing = 'log')",
                             lo=0.0, lo_open=True, hi=1.0),
        "flow": Param("bool", True, "overlay the population flow (quadfast.euclid.population_flow) from the "
                      "same start"),
    })
    return p


def _derive_euclid(p, given):
    from .euclid import predicted_emergence
    from .teacher import width_of

    d = p["d"]
    if p["r"] is None:
        p["r"] = width_of(d, p["beta"])
    elif p["r"] > d:
        raise ValueError(f"r: expected at most d = {d}, got {p['r']}")
    if "r" in given:
        p["beta"] = None  # the features are counted directly
    if p["width"] is None:
        p["width"] = p["r"]
    if p["block"] is not None and p["block"] > 1 and p["batch"] != 1:
        raise ValueError(f"block: the blocked engine runs batch 1 only; use block=1 with batch={p['batch']}")
    p["lr"] = p["lr_d"] / d
    if p["steps"] is None:
        if p["t_max"] is None:
            from .teacher import power_law_coef

            t_last = float(predicted_emergence(power_law_coef(p["r"], p["alpha"]), d, p["width"],
                                               p["init_scale"])[-1])
            if not (math.isfinite(t_last) and t_last > 0):
                raise ValueError("t_max: no predicted emergence time to default to (the start is not small "
                                 "against the last feature); give t_max or steps")
            p["t_max"] = 1.5 * t_last
        p["steps"] = int(round(p["t_max"] / p["lr"]))
        if p["steps"] < 1:
            raise ValueError(f"t_max: {p['t_max']} is less than one step (lr = {p['lr']:g})")
    p["t_max"] = p["lr"] * p["steps"]
    return p


def _euclid_record_points(p):
    if p["spacing"] == "log":
        return _record_points(p["steps"], p["records"], p["record_from"])
    return np.unique(np.round(np.linspace(0, p["steps"], p["records"] + 1)).astype(np.int64))


def _execute_euclid(p, *, progress=False, checkpoint=None, resume=False, chunk_seconds=0.25):
    """Run single-stage Euclidean SGD with the parameters ``p`` (resolved).

    Checkpoint and resume as for ``stiefel-sgd``: Ctrl-C writes ``checkpoint`` (the
    simulator, whose pickle resumes bit-identically, and the rows so far) and raises
    :class:`Interrupted`; ``resume=True`` continues from it, bit-identically to an
    uninterrupted run (the kernel is split only at progress chunks, which end on block
    boundaries, and at record points, the same in both).
    """
    from . import euclid
    from .euclid import EuclideanSGD
    from .teacher import Teacher, power_law_coef

    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        st = load_checkpoint(ckpt, p)
        sim, record, flow, rows, elapsed = st["sim"], st["record"], st["flow"], st["rows"], st["elapsed"]
        sim.threads = p["threads"]  # this machine's threads (the results do not depend on it)
        resumed_from = sim.steps_done
    else:
        teacher = Teacher(power_law_coef(p["r"], p["alpha"]), d=p["d"], noise=p["noise"])
        sim = EuclideanSGD(teacher, p["width"], lr=p["lr"], batch=p["batch"], seed=p["seed"],
                           init_scale=p["init_scale"], dtype=p["dtype"], block=p["block"], threads=p["threads"])
        record = _euclid_record_points(p)
        flow = None
        if p["flow"]:
            tt = p["lr"] * record.astype(np.float64)
            fl = euclid.population_flow(teacher, sim.W, tt)
            flow = {"flow_time": fl["time"], "flow_risk": fl["risk"], "flow_alignment": fl["alignment"]}
        rows, elapsed, resumed_from = [], 0.0, None
    rows, elapsed = _run_recorded(sim, p, record, flow, rows, elapsed, ckpt, progress, chunk_seconds)
    steps = np.array([r[0] for r in rows], dtype=np.int64)
    coef = sim.teacher.coef
    arrays = {
        "steps": steps, "time": p["lr"] * steps.astype(np.float64), "risk": np.array([r[1] for r in rows]),
        "alignment": np.array([r[2] for r in rows]), "samples": steps * p["batch"],
        "flops": 4.0 * p["d"] * p["width"] * p["batch"] * steps.astype(np.float64), "coef": coef,
        "t_predicted": euclid.predicted_emergence(coef, p["d"], p["width"], p["init_scale"]),
    }
    if flow is not None:
        arrays.update(flow)
    info = {"timings": {"seconds": elapsed, "seconds_per_step": elapsed / max(1, sim.steps_done),
                        "steps_done": sim.steps_done},
            "block": sim.block, "threads": sim.threads, "resumed_from": resumed_from,
            "arrays": {"steps": "SGD steps at each record", "time": "t = lr * steps", "samples": "steps * batch",
                       "flops": "4 d N batch steps (z = W^T x and the update, multiply-adds x 2)",
                       "risk": "||W W^T - M*||_F^2 / ||M*||_F^2", "coef": "teacher lambda_j",
                       "alignment": "A_j = ||W^T theta_j||^2 / lambda_j (records x r)",
                       "t_predicted": "leading-order emergence times (quadfast.euclid.predicted_emergence)",
                       "flow_risk": "population-flow risk from the same W0 at flow_time",
                       "flow_alignment": "population-flow alignment from the same W0 at flow_time"}}
    return arrays, info


register_procedure(Procedure(
    name="euclidean-sgd", params=_euclid_params(), execute=_execute_euclid, derive=_derive_euclid,
    kind="euclid-run", exclusive=(("beta", "r"), ("t_max", "steps")),
    doc="single-stage online SGD of the unconstrained 2-homogeneous student (quadfast.EuclideanSGD) "
        "with the population-flow overlay"))


# ----------------------------------------------------------------------------- qplr
def _qplr_params():
    return {
        "M": Param("int", 256, "model size: coordinates modelled", lo=1, hi=1 << 30),
        "alpha": Param("float", 3.0, "data spectrum lambda_i = i^-alpha", lo=0.0, lo_open=True),
        "beta": Param("float", 2.0, "signal decay lambda_i theta*_i^2 = i^-beta (beta > 1: finite signal)", lo=1.0,
                      lo_open=True),
        "noise": Param("float", 0.0, "label noise sigma", lo=0.0),
        "steps": Param("int", 1 << 14, "T, the steps (= samples) of each run; the schedule depends on T",
                       lo=1, hi=(1 << 40) - 1),
        "replicas": Param("int", 8, "R independent runs; replica r draws its own streams", lo=1, hi=(1 << 23) - 1),
        "lr": Param("float", None, "base step size eta of the quadratic model (default QPLR.default_lr)", lo=0.0,
                    lo_open=True),
        "lr_linear": Param("float", None, "base step size of the linear model (default QPLR.default_lr_linear)",
                           lo=0.0, lo_open=True),
        "init": Param("float", 0.1, "start v_0 = init * 1 (w_0 = 0)"),
        "phase1": Param("int", None, "steps at the constant step size (default steps // 2)", lo=0),
        "stages": Param("int", None, "halvings of the step size after phase 1 (default floor(log2(steps - phase1)))",
                        lo=1),
        "linear": Param("bool", True, "also run the linear baseline <x, w> on the same samples"),
        "seed": Param("int", 0, "key of the sample streams", lo=0, hi=2**64 - 1),
        "records": Param("int", 30, "record points, log-spaced in steps (plus 0 and steps)", lo=2, hi=100_000),
        "threads": Param("int", None, "OpenMP threads over replicas (default: QUADFAST_NUM_THREADS, OMP_NUM_THREADS, "
                         "else the CPUs); results do not depend on it", lo=1, hi=4096),
    }


def _derive_qplr(p, given):
    from .qplr import QPLR, _check_schedule

    p["steps"], p["phase1"], p["stages"] = _check_schedule(p["steps"], p["phase1"], p["stages"])
    prob = QPLR(p["M"], p["alpha"], p["beta"], p["noise"])
    if p["lr"] is None:
        p["lr"] = prob.default_lr()
    if p["lr_linear"] is None:
        p["lr_linear"] = prob.default_lr_linear()
    return p


# replicas per kernel call: progress and checkpoints fall between calls
_QPLR_PARTS = 20


class _HeldSigint:
    """Ctrl-C held until the kernel call in flight returns.

    The kernels run without the GIL, so Python raises KeyboardInterrupt only when the call
    returns, and the call's finished result would be lost before it is stored. In the main
    thread this context holds the signal; :meth:`deliver`, called once the result is
    stored, passes it on to the previous handler (the sweep worker's, or Python's, which
    raises KeyboardInterrupt). A Ctrl-C that is still held when the context exits without
    an exception (it arrived after the last :meth:`deliver`: a process-directed signal
    can land on another thread and reach Python late) is passed on there, so it is never
    swallowed. Elsewhere (threads cannot set handlers) it does nothing.
    """

    def __enter__(self):
        self.hit, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            old = signal.getsignal(signal.SIGINT)
            if callable(old):  # not SIG_IGN or SIG_DFL: those are left alone
                self.old = old
                signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.hit = True

    def __exit__(self, exc_type, exc, tb):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            if exc_type is None:
                self.deliver()
        return False

    def deliver(self):
        if self.hit:
            self.hit = False
            self.old(signal.SIGINT, None)
            raise KeyboardInterrupt


def _execute_qplr(p, *, progress=False, checkpoint=None, resume=False, chunk_seconds=None):
    """R replicas of quadratically parameterised linear regression (:class:`quadfast.QPLR`,
    seed 003), quadratic and linear models on the same samples, exact excess risks at
    log-spaced record points.

    The replicas run in groups of ``max(threads, ceil(R / 20))`` rounded up to a multiple
    of ``threads`` (20 groups at most): replica r's result does not depend on the
    grouping (``QPLR.run(replica0=...)``), so the run equals one call over all replicas
    bit for bit. Progress counts replicas. Ctrl-C is held until the group in flight
    finishes; then ``checkpoint`` is written with every finished group and
    :class:`Interrupted` is raised (its ``steps_done`` counts replicas here);
    ``resume=True`` continues with the next replica.
    """
    from . import _threads
    from .qplr import QPLR, schedule
    from .stiefel import logspace_steps

    prob = QPLR(p["M"], p["alpha"], p["beta"], p["noise"])
    record = logspace_steps(p["steps"], p["records"])
    R, linear = p["replicas"], p["linear"]
    threads = _threads.resolve(p["threads"])
    group = max(threads, -(-R // _QPLR_PARTS))
    group = -(-group // threads) * threads
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        st = load_checkpoint(ckpt, p)
        parts, elapsed, resumed = st["parts"], st["elapsed"], True
    else:
        parts, elapsed, resumed = [], 0.0, False
    done = sum(part["v"].shape[0] for part in parts)
    resumed_from = done if resumed else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=R, initial=done, unit="replica", desc=f"QPLR M={p['M']} T={p['steps']}", leave=True)
    t0 = time.perf_counter()
    try:
        with _HeldSigint() as held:
            while done < R:
                n = min(group, R - done)
                out = prob.run(p["steps"], n, lr=p["lr"], lr_linear=p["lr_linear"], init=p["init"],
                               phase1=p["phase1"], stages=p["stages"], record=record, seed=p["seed"], linear=linear,
                               threads=threads, replica0=done)
                parts.append({"risk": out.risk, "risk_linear": out.risk_linear, "v": out.v, "w": out.w,
                              "diverged": out.diverged, "diverged_linear": out.diverged_linear})
                done += n
                if bar is not None:
                    bar.update(n)
                held.deliver()
    except KeyboardInterrupt:
        if ckpt is None:
            raise
        _atomic_pickle({"format": CHECKPOINT_FORMAT, "params": p, "parts": parts,
                        "elapsed": elapsed + time.perf_counter() - t0}, ckpt)
        raise Interrupted(ckpt, done) from None
    finally:
        if bar is not None:
            bar.close()
    elapsed += time.perf_counter() - t0

    def cat(key, axis):
        return np.concatenate([part[key] for part in parts], axis=axis)

    risk = cat("risk", 1)
    arrays = {"steps": record, "samples": record.copy(), "risk": risk.mean(axis=1), "risk_replicas": risk,
              "v": cat("v", 0), "diverged": cat("diverged", 0), "lam": prob.lam, "theta": prob.theta,
              "tail": np.float64(prob.tail), "lr_schedule": schedule(p["steps"], p["lr"], p["phase1"], p["stages"])}
    if linear:
        risk_l = cat("risk_linear", 1)
        arrays.update({"risk_linear": risk_l.mean(axis=1), "risk_linear_replicas": risk_l, "w": cat("w", 0),
                       "diverged_linear": cat("diverged_linear", 0)})
    info = {"timings": {"seconds": elapsed, "seconds_per_replica_step": elapsed / (p["steps"] * R),
                        "replicas_done": R},
            "resumed_from": resumed_from, "threads": threads, "replica_group": group,
            "arrays": {"steps": "steps at each record (log-spaced, 0 and T included)", "samples": "= steps",
                       "risk": "excess risk of <x, v (.) v>, averaged over the replicas (NaN if one diverged): "
                               "sum_i lambda_i (v_i^2 - theta*_i)^2 + zeta(beta, M+1)",
                       "risk_replicas": "the same per replica (records x R)",
                       "risk_linear": "excess risk of <x, w>, averaged over replicas (NaN if one diverged)",
                       "risk_linear_replicas": "the same per replica (records x R)",
                       "v": "final weights of the quadratic model (R x M)", "w": "final linear weights (R x M)",
                       "diverged": "1-based step at which replica r's error turned non-finite, 0 if never",
                       "diverged_linear": "the same for the linear model",
                       "lam": "lambda_i = i^-alpha", "theta": "theta*_i = i^((alpha - beta)/2)",
                       "tail": "zeta(beta, M+1), the risk floor of any model of size M",
                       "lr_schedule": "eta_t of the quadratic model (the linear one is lr_linear / lr times it)"}}
    return arrays, info


register_procedure(Procedure(
    name="qplr", params=_qplr_params(), execute=_execute_qplr, derive=_derive_qplr, kind="qplr-run",
    doc="quadratically parameterised linear regression (quadfast.QPLR, seed 003): quadratic and linear models, "
        "R replicas, two-phase schedule"))


# ----------------------------------------------------------------------------- two-stage
def _two_stage_params():
    p = _stiefel_params()
    p.update({
        "finetune_n": Param("int", None, "fresh samples of phase II (default 2 N (N + 1), four per unknown of B)",
                            lo=1),
        "finetune_seed": Param("int", 0, "seed of phase II's samples (combined with seed; independent of phase I's)",
                               lo=0, hi=2**64 - 1),
        "finetune_tol": Param("float", 1e-6, "CG tolerance on the normal equations' relative residual", lo=0.0,
                              lo_open=True),
        "finetune_maxiter": Param("int", 500, "most CG iterations", lo=0),
    })
    return p


def _derive_two_stage(p, given):
    p = _derive_stiefel(p, given)
    if p["finetune_n"] is None:
        p["finetune_n"] = 2 * p["width"] * (p["width"] + 1)
    return p


def _execute_two_stage(p, *, progress=False, checkpoint=None, resume=False, chunk_seconds=0.25):
    """Seed 002's two-stage algorithm: phase I is ``stiefel-sgd`` with these parameters
    (online SGD on the Stiefel manifold); phase II fits the radial part by least squares on
    ``finetune_n`` fresh samples (:func:`quadfast.finetune`: ``B = argmin sum_s
    (<z_s z_s^T - I, B> - y_s)^2``, ``z = W^T x``, by CG), giving the student ``W B W^T``
    and the fine-tuned weights ``W Omega``, ``Omega = B_+^{1/2}``.

    Ctrl-C in phase I checkpoints as ``stiefel-sgd`` does. Ctrl-C in phase II writes a
    checkpoint of the finished phase I, and ``resume=True`` then runs phase II again from
    it: the fine-tune is one call, and its samples are a function of the seeds.
    """
    from .radial import finetune

    sim, arrays, info, state = _stiefel_session(p, progress, checkpoint, resume, chunk_seconds)
    t0 = time.perf_counter()
    try:
        res = finetune(sim, n=p["finetune_n"], seed=p["finetune_seed"], tol=p["finetune_tol"],
                       maxiter=p["finetune_maxiter"])
    except KeyboardInterrupt:
        if checkpoint is None:
            raise
        _atomic_pickle(state, Path(checkpoint))
        raise Interrupted(Path(checkpoint), sim.steps_done) from None
    seconds = time.perf_counter() - t0
    arrays.update({"B": res.B, "Omega": res.Omega, "finetune_risk": np.float64(res.risk),
                   "finetune_risk_psd": np.float64(res.risk_psd), "finetune_risk_start": np.float64(res.risk_start),
                   "optimum_risk": np.float64(sim.risk())})
    info["finetune"] = {"iterations": res.iterations, "residual": res.residual, "converged": res.converged,
                        "n": res.n, "sample_seed": res.sample_seed, "seconds": seconds}
    info["timings"]["finetune_seconds"] = seconds
    info["arrays"].update({
        "B": "phase II: least-squares symmetric B (N x N); the student is W B W^T",
        "Omega": "B_+^{1/2}; the fine-tuned weights are W Omega",
        "finetune_risk": "||W B W^T - M*||_F^2 / ||M*||_F^2 after phase II",
        "finetune_risk_psd": "the same for W B_+ W^T = (W Omega)(W Omega)^T",
        "finetune_risk_start": "the same for the moment estimator (the CG start)",
        "optimum_risk": "risk of the phase-I student W, 1 - tr((G Lambda)^2)/tr(Lambda^2): the best B for this W "
                        "is W^T M* W, which phase II estimates"})
    return arrays, info


register_procedure(Procedure(
    name="two-stage", params=_two_stage_params(), execute=_execute_two_stage, derive=_derive_two_stage,
    kind="stiefel-run", exclusive=(("lr_d", "lr_const"), ("t_max", "steps", "n_factor")),
    doc="seed 002: Stiefel SGD (phase I), then the least-squares fine-tune of the radial part (phase II)"))
