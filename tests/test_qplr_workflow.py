"""Quadratically parameterised linear regression in the research workflow: the ``qplr``
procedure (replica groups equal to one call bit for bit, Ctrl-C checkpoints that resume
bit for bit), the shipped ``qplr_scaling`` configuration at reduced size (``qplr-scaling``
analysis, table, figures), the plot command, and configuration errors that name the key."""
import csv
import json
import os
import signal

import numpy as np
import pytest

import quadfast as qf
from quadfast.cli import main
from quadfast.config import ConfigError, load_config, parse_config, shipped, shipped_path
from quadfast.procedures import Interrupted, get_procedure
from quadfast.results import load_result

PER_REPLICA = ("risk_replicas", "risk_linear_replicas", "v", "w", "diverged", "diverged_linear")


def _direct(p):
    """The same run as the procedure, as one call of QPLR.run over all replicas."""
    prob = qf.QPLR(p["M"], p["alpha"], p["beta"], p["noise"])
    return prob.run(p["steps"], p["replicas"], lr=p["lr"], lr_linear=p["lr_linear"], init=p["init"],
                    phase1=p["phase1"], stages=p["stages"], record=qf.logspace_steps(p["steps"], p["records"]),
                    seed=p["seed"], threads=1)


def test_replica_groups_equal_one_call_bit_for_bit():
    prob = qf.QPLR(M=40, alpha=3.0, beta=2.0, noise=0.1)
    rec = qf.logspace_steps(500, 6)
    whole = prob.run(500, 7, record=rec, seed=5, threads=2)
    a = prob.run(500, 3, record=rec, seed=5, threads=1)
    b = prob.run(500, 4, record=rec, seed=5, threads=2, replica0=3)
    np.testing.assert_array_equal(whole.risk, np.hstack([a.risk, b.risk]))
    np.testing.assert_array_equal(whole.risk_linear, np.hstack([a.risk_linear, b.risk_linear]))
    np.testing.assert_array_equal(whole.v, np.vstack([a.v, b.v]))
    np.testing.assert_array_equal(whole.w, np.vstack([a.w, b.w]))
    for bad in (-1, 1.5, (1 << 23) - 7):
        with pytest.raises((ValueError, TypeError), match="replica0"):
            prob.run(10, 7, replica0=bad)


def test_procedure_equals_the_direct_run_and_describes_its_arrays():
    proc = get_procedure("qplr")
    p = proc.resolve({"M": 24, "alpha": 5.0, "beta": 2.0, "noise": 0.1, "steps": 700, "replicas": 45,
                      "records": 9, "seed": 3, "threads": 2})
    prob = qf.QPLR(24, 5.0, 2.0, 0.1)
    assert p["lr"] == prob.default_lr() and p["lr_linear"] == prob.default_lr_linear()
    assert (p["phase1"], p["stages"]) == (350, 8)  # T // 2 and floor(log2(T - phase1))
    arrays, info = proc.execute(p)
    assert info["replica_group"] == 4  # ceil(45 / 20) rounded up to the threads: 12 calls
    ref = _direct(p)
    np.testing.assert_array_equal(arrays["steps"], ref.steps)
    for k, v in (("risk_replicas", ref.risk), ("risk_linear_replicas", ref.risk_linear), ("v", ref.v), ("w", ref.w),
                 ("diverged", ref.diverged), ("diverged_linear", ref.diverged_linear)):
        np.testing.assert_array_equal(arrays[k], v)
    np.testing.assert_array_equal(arrays["risk"], ref.risk.mean(axis=1))
    np.testing.assert_array_equal(arrays["lr_schedule"], qf.qplr.schedule(700, p["lr"], 350, 8))
    assert float(arrays["tail"]) == prob.tail
    assert set(arrays) <= set(info["arrays"])  # every array is described in the metadata


def _interrupt_after(monkeypatch, calls):
    """KeyboardInterrupt right after QPLR.run call number ``calls`` returns (where a real
    Ctrl-C lands: the kernel runs without the GIL)."""
    orig = qf.QPLR.run
    state = {"n": 0}

    def run(self, *a, **k):
        out = orig(self, *a, **k)
        state["n"] += 1
        if state["n"] == calls:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(qf.QPLR, "run", run)
    return state


def test_procedure_interrupted_and_resumed_is_bit_identical(tmp_path, monkeypatch):
    proc = get_procedure("qplr")
    p = proc.resolve({"M": 16, "steps": 300, "replicas": 6, "records": 5, "threads": 1, "noise": 0.2})
    whole, _ = proc.execute(p)
    _interrupt_after(monkeypatch, 3)  # raised inside the third call: that group's result is lost
    with pytest.raises(Interrupted) as info:
        proc.execute(p, checkpoint=tmp_path / "q.ckpt")
    assert info.value.steps_done == 2 and (tmp_path / "q.ckpt").is_file()
    monkeypatch.undo()
    arrays, meta = proc.execute(p, checkpoint=tmp_path / "q.ckpt", resume=True)
    assert meta["resumed_from"] == 2
    for k in PER_REPLICA + ("risk", "risk_linear", "steps"):
        np.testing.assert_array_equal(arrays[k], whole[k])
    with pytest.raises(ValueError, match="checkpoint.*seed"):
        proc.execute(dict(p, seed=1), checkpoint=tmp_path / "q.ckpt", resume=True)


def test_ctrl_c_during_a_kernel_call_keeps_that_call(tmp_path, monkeypatch):
    """A real SIGINT that arrives while a group runs is held until the group's result is
    stored: the checkpoint holds it, and the resumed run equals an uninterrupted one."""
    proc = get_procedure("qplr")
    p = proc.resolve({"M": 16, "steps": 300, "replicas": 6, "records": 5, "threads": 1, "noise": 0.2})
    whole, _ = proc.execute(p)
    orig = qf.QPLR.run
    calls = {"n": 0}

    def run(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            # Ctrl-C while "the kernel" runs. raise_signal sends it to this thread, so the
            # handler has run before the call below starts; os.kill(getpid()) may land on a
            # BLAS or OpenMP thread and reach Python one or more groups late (a flake).
            signal.raise_signal(signal.SIGINT)
        return orig(self, *a, **k)

    monkeypatch.setattr(qf.QPLR, "run", run)
    with pytest.raises(Interrupted) as info:
        proc.execute(p, checkpoint=tmp_path / "q.ckpt")
    assert info.value.steps_done == 3 and calls["n"] == 3  # the third group is kept; no fourth starts
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    monkeypatch.undo()
    arrays, meta = proc.execute(p, checkpoint=tmp_path / "q.ckpt", resume=True)
    assert meta["resumed_from"] == 3
    for k in PER_REPLICA + ("risk", "risk_linear"):
        np.testing.assert_array_equal(arrays[k], whole[k])


def test_a_held_ctrl_c_that_arrives_after_the_last_delivery_is_passed_on():
    """A SIGINT taken by the hold after its last deliver() is raised when the hold ends,
    not swallowed, and the previous handler is back in place."""
    from quadfast.procedures import _HeldSigint

    with pytest.raises(KeyboardInterrupt):
        with _HeldSigint() as held:
            held.deliver()  # nothing held yet: no-op
            signal.raise_signal(signal.SIGINT)
            assert held.hit  # held, not raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with _HeldSigint():  # nothing arrives: exits quietly
        pass


def test_ctrl_c_during_the_last_group_keeps_every_group(tmp_path, monkeypatch):
    """Ctrl-C in the last group: all groups are stored, Interrupted counts them all, and
    resuming the checkpoint returns the uninterrupted run without running anything."""
    proc = get_procedure("qplr")
    p = proc.resolve({"M": 8, "steps": 100, "replicas": 3, "records": 4, "threads": 1})
    whole, _ = proc.execute(p)
    orig = qf.QPLR.run
    calls = {"n": 0}

    def run(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)
        return orig(self, *a, **k)

    monkeypatch.setattr(qf.QPLR, "run", run)
    with pytest.raises(Interrupted) as info:
        proc.execute(p, checkpoint=tmp_path / "q.ckpt")
    assert info.value.steps_done == 3 and calls["n"] == 3
    arrays, meta = proc.execute(p, checkpoint=tmp_path / "q.ckpt", resume=True)
    assert meta["resumed_from"] == 3 and calls["n"] == 3  # nothing left to run
    for k in PER_REPLICA + ("risk", "risk_linear"):
        np.testing.assert_array_equal(arrays[k], whole[k])


def test_the_analysis_keeps_settings_apart(tmp_path):
    """Runs that differ in anything but T (here the step size) are separate settings."""
    text = ('experiment = "qplr-scaling"\nprocedure = "qplr"\n[params]\nM = 8\nreplicas = 2\nrecords = 4\n'
            '[grid]\nlr = [0.01, 0.02]\nsteps = [64, 128, 256, 512]\n[analysis]\nt_lo = 64\n')
    (tmp_path / "q.toml").write_text(text)
    assert main(["run", str(tmp_path / "q.toml"), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    settings = json.loads((tmp_path / "o" / "summary.json").read_text())["settings"]
    assert len(settings) == 2 and all(s["steps"] == [64, 128, 256, 512] for s in settings)
    assert all(s["diverged"] == [0, 0, 0, 0] for s in settings)


def test_qplr_scaling_configuration_reduced(tmp_path):
    assert "qplr_scaling" in shipped()
    cfg = load_config(shipped_path("qplr_scaling")).reduce()
    assert main(["run", str(shipped_path("qplr_scaling")), "--reduced", "--out", str(tmp_path), "--no-progress"]) == 0
    runs = {r.meta["config"]["steps"]: r for r in map(load_result, (tmp_path / "runs").glob("*.npz"))}
    assert sorted(runs) == sorted(c["steps"] for c in cfg.runs())
    for T, res in runs.items():  # each file holds the direct run of its parameters
        assert res.meta["procedure"] == "qplr" and res.meta["kind"] == "qplr-run"
        ref = _direct(res.meta["config"])
        np.testing.assert_array_equal(res["risk_replicas"], ref.risk)
        np.testing.assert_array_equal(res["risk_linear_replicas"], ref.risk_linear)
    summ = json.loads((tmp_path / "summary.json").read_text())
    (s,) = summ["settings"]
    T = np.array(s["steps"])
    lo, hi = s["window"]
    assert (lo, hi) == (512, 4096)  # [reduced.analysis] t_lo, and the largest T
    for model, key, law in (("quadratic", "risk", "T_quadratic"), ("linear", "risk_linear", "T_linear")):
        y = np.array([runs[t][key][-1] for t in T]) - runs[T[0]]["tail"]
        np.testing.assert_array_equal(s[f"excess_{model}"], y)
        # the fitted slope is the least-squares slope of log y on log T over the window
        m = (T >= lo) & (T <= hi)
        assert s["fits"][model]["slope"] == pytest.approx(np.polyfit(np.log(T[m]), np.log(y[m]), 1)[0], abs=1e-12)
        assert s["fits"][model]["predicted"] == qf.qplr.predicted_exponents(5.0, 2.0)[law]
    assert (tmp_path / "qplr_scaling.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(len(r["steps"]) for r in runs.values())
    last = [r for r in rows if r["T"] == "4096" and r["steps"] == "4096"]
    assert len(last) == 1 and float(last[0]["risk_linear"]) == runs[4096]["risk_linear"][-1]
    assert float(last[0]["risk_floor"]) == float(runs[4096]["tail"])


def test_plot_command_draws_a_qplr_result(tmp_path):
    proc = get_procedure("qplr")
    text = ('experiment = "qplr-scaling"\nprocedure = "qplr"\n[params]\nM = 8\nreplicas = 2\nrecords = 4\n'
            '[grid]\nsteps = [64, 128, 256]\n')
    (tmp_path / "q.toml").write_text(text)
    assert main(["run", str(tmp_path / "q.toml"), "--out", str(tmp_path / "o"), "--no-progress", "--no-plot"]) == 0
    one = next((tmp_path / "o" / "runs").glob("*.npz"))
    assert main(["plot", str(one), "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one" / (one.stem + ".png")).read_bytes()[:4] == b"\x89PNG"
    # three T values cannot be fitted over the default window (T >= 8192): the analysis
    # says so instead of failing
    assert main(["plot", str(tmp_path / "o"), "--out", str(tmp_path / "figs")]) == 0
    summ = json.loads((tmp_path / "figs" / "summary.json").read_text())
    assert "no fit" in summ["settings"][0]["fits"]["quadratic"]["note"]
    assert proc.kind == "qplr-run"


def test_experiment_and_procedure_must_match():
    for exp, proc in (("single", "qplr"), ("qplr-scaling", "stiefel-sgd")):
        with pytest.raises(ConfigError, match="experiment: .*cannot analyse"):
            parse_config(f'experiment = "{exp}"\nprocedure = "{proc}"\n')


@pytest.mark.parametrize("params, key", [
    ("beta = 1.0", "beta"), ("steps = 100\nphase1 = 101", "phase1"), ("steps = 100\nstages = 60", "stages"),
    ("M = 0", r"\.M: "), ("frobnicate = 1", "frobnicate"), ("replicas = 1.5", "replicas"),
    ("lr = -1.0", r"\.lr: "), ("records = 1", "records"),
])
def test_configuration_errors_name_the_key(params, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(f'experiment = "qplr-scaling"\nprocedure = "qplr"\n[params]\n{params}\n')


def test_logspace_steps_always_ends_at_steps():
    assert qf.logspace_steps(1000, 1).tolist() == [0, 1, 1000]
    assert qf.logspace_steps(1000, 2).tolist() == [0, 1, 1000]
    assert qf.logspace_steps(1, 5, include_zero=False).tolist() == [1]
