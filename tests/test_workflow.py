"""The research workflow: shipped experiments at reduced size, configuration errors,
Ctrl-C checkpoints that resume bit for bit, sweeps (local processes, Dask) that skip
finished runs and survive failures and interruptions, the tidy table, and the plot CLI."""
import csv
import json
import math
import os

import numpy as np
import pytest

import quadfast as qf
from quadfast import theory
from quadfast.cli import main
from quadfast.config import ConfigError, load_config, parse_config, shipped, shipped_path
from quadfast.experiments import crossing
from quadfast.procedures import Interrupted, get_procedure
from quadfast.results import load_result
from quadfast.stiefel import StiefelSGD
from quadfast.sweep import run_sweep

ARRAYS = ("steps", "time", "risk", "alignment", "orth_error", "samples", "flops", "flow_risk", "flow_alignment")


def _interrupt_after(monkeypatch, calls, seed=None):
    """Raise KeyboardInterrupt right after kernel call number ``calls`` (of the simulator
    with this ``seed``, if given) returns, i.e. at a chunk boundary: where a real Ctrl-C
    lands, since the kernel runs without the GIL."""
    orig = StiefelSGD._advance
    state = {"n": 0}

    def advance(self, *a, **k):
        orig(self, *a, **k)
        if seed is None or self.seed == seed:
            state["n"] += 1
            if state["n"] == calls:
                raise KeyboardInterrupt

    monkeypatch.setattr(StiefelSGD, "_advance", advance)
    return state


def _small_cfg(tmp_path, grid='seed = [0, 1]', extra=""):
    text = f"""
experiment = "single"
procedure = "stiefel-sgd"
name = "small"
[params]
d = 64
lr_d = 2e-3
t_max = 0.2
records = 8
{extra}
[grid]
{grid}
"""
    p = tmp_path / "small.toml"
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------- experiments
def test_shipped_configurations_cover_the_three_experiments():
    names = shipped()
    assert {"scaling", "alignment", "sample_complexity", "default"} <= set(names)
    for n in names:
        cfg = load_config(shipped_path(n))
        assert cfg.runs() and cfg.reduce().runs()
    # the template of the default run is the default run
    assert load_config(shipped_path("default")).runs()[0] == get_procedure("stiefel-sgd").resolve({})


def test_scaling_experiment_reduced(tmp_path):
    cfg = load_config(shipped_path("scaling")).reduce()
    rep = run_sweep(cfg, tmp_path, workers=1, progress=False)
    assert rep.complete and len(rep.done) == 3
    from quadfast.experiments import analyse

    results = [load_result(tmp_path / "runs" / f"{r}.npz") for r in rep.runs]
    summary = analyse("scaling", results, cfg.analysis, tmp_path)
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    for res, fit in zip(sorted(results, key=lambda r: r.meta["config"]["alpha"]), summary["fits"]):
        c = res.meta["config"]
        # compute axis: exactly 6 d N flops per sample
        np.testing.assert_array_equal(res["flops"], 6.0 * c["d"] * c["width"] * res["steps"])
        assert res["flow_risk"][0] == res["risk"][0]  # the overlay starts at the run's own W0
        if c["alpha"] <= 0.5:
            assert fit["fit"] is None and "alpha" in fit["note"]
            continue
        win = theory.powerlaw_window(c["alpha"], c["d"], c["width"], c["r"], j_lo=2, eps=0.25)
        assert fit["window"] == pytest.approx(win)
        if fit["fit"] is not None:  # the analysis reports exactly theory's fit
            ref = theory.fit_loglog_slope(res["time"], res["risk"], window=win)
            assert fit["fit"]["slope"] == ref.slope and fit["fit"]["ci_low"] == ref.ci_low
    # at alpha = 1.5 the window is wide enough: the Riccati flow's slope is the theory
    # exponent -4/3 within 0.1 (finite-r bend; 0.03 measured at d = 128, r = 12)
    f15 = summary["fits"][2]
    assert f15["flow_fit"]["slope"] == pytest.approx(-4 / 3, abs=0.1)


def test_alignment_experiment_reduced(tmp_path):
    cfg = load_config(shipped_path("alignment")).reduce()
    assert main(["run", str(shipped_path("alignment")), "--reduced", "--out", str(tmp_path), "--no-progress"]) == 0
    summ = json.loads((tmp_path / "summary.json").read_text())["runs"][0]
    c = cfg.runs()[0]
    coef = qf.power_law_coef(c["r"], c["alpha"])
    np.testing.assert_allclose(summ["t_theory"], theory.emergence_time(coef[: len(summ["t_theory"])], c["d"], c["width"]))
    # strong features turn on first: features 1-3 cross 1/2 in order of j, in SGD and in
    # the exact flow; further down, close coefficients may swap from a random start, so
    # the order of all crossings is checked as a rank correlation with j (> 0.8)
    import scipy.stats

    tf = [t for t in summ["t_flow"] if t is not None]
    ts = [t for t in summ["t_sgd"][:3] if t is not None]
    assert len(tf) >= 6 and np.all(np.diff(tf[:3]) > 0)
    assert scipy.stats.spearmanr(np.arange(len(tf)), tf)[0] > 0.8
    assert len(ts) == 3 and np.all(np.diff(ts) > 0)
    # the decoupled logistic predicts the first emergence within a factor 2 (it neglects
    # the coupling through the off-diagonal overlaps; measured ratio ~0.8 at this size)
    assert 0.5 < ts[0] / summ["t_theory"][0] < 2.0
    assert list(tmp_path.glob("alignment-*.png"))


def test_sample_complexity_experiment_reduced(tmp_path):
    cfg = load_config(shipped_path("sample_complexity")).reduce()
    rep = run_sweep(cfg, tmp_path, workers=1, progress=False)
    assert rep.complete and len(rep.done) == 4
    from quadfast.experiments import analyse

    results = [load_result(tmp_path / "runs" / f"{r}.npz") for r in rep.runs]
    summary = analyse("sample-complexity", results, cfg.analysis, tmp_path)
    for res, pt in zip(results, summary["points"]):
        c = res.meta["config"]
        assert c["lr"] == theory.learning_rate(c["d"], c["alpha"], c["r"], const=0.01)
        np.testing.assert_array_equal(res["samples"], res["steps"] * c["batch"])
        assert pt["n_target"] == crossing(res["samples"][1:], res["risk"][1:], cfg.analysis["target"])
        assert pt["n_target"] is not None  # the reduced runs reach the target
        assert pt["n_theory"] == theory.sample_size(c["d"], c["alpha"], c["r"])
    assert (tmp_path / "sample_complexity.png").is_file()


def test_crossing_interpolates_in_log_x():
    x = np.array([1.0, 10.0, 100.0])
    assert crossing(x, [0.0, 0.5, 1.0], 0.75) == pytest.approx(math.sqrt(1000.0))
    assert crossing(x, [1.0, 0.4, 0.1], 0.4) == pytest.approx(10.0, rel=1e-15)
    assert crossing(x, [1.0, 0.9, 0.8], 0.5) is None


# ----------------------------------------------------------------------------- configuration errors
@pytest.mark.parametrize("text,key", [
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nd = \n', "'d'"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nd = 64\nfrobnicate = 3\n', "params.frobnicate"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[grid]\nalpha = [1.0, "x"]\n', "grid.alpha[1]"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nd = "big"\n', "params.d"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nt_max = 1.0\nsteps = 10\n', "steps"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nd = 64\nwidth = 65\n', "width"),
    ('experiment = "single"\nprocedure = "euclid"\n', "procedure"),
    ('experiment = "nope"\nprocedure = "stiefel-sgd"\n', "experiment"),
    ('experiment = "scaling"\nprocedure = "stiefel-sgd"\n[analysis]\nj_low = 2\n', "analysis.j_low"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\nparms = 1\n', "parms"),
    ('procedure = "stiefel-sgd"\n', "experiment"),
    ('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nd = 64\n[grid]\nd = [64]\n', "grid.d"),
])
def test_bad_configuration_is_one_line_naming_the_key(tmp_path, capsys, text, key):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(p)
    out = tmp_path / "out"
    assert main(["run", str(p), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quadfast: error:") and key in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()  # nothing was started


def test_missing_configuration_and_default_flags_with_config(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["run", str(_small_cfg(tmp_path)), "--d", "128"]) == 2
    assert "--d" in capsys.readouterr().err


def test_unwritable_output_is_reported_before_running(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = _small_cfg(tmp_path)
    for cmd in (["sweep", str(cfg), "--workers", "1"], ["run", str(cfg)]):
        assert main([*cmd, "--out", str(blocker / "sub"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("quadfast: error: --out:") and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


# ----------------------------------------------------------------------------- Ctrl-C and --resume
def test_default_run_interrupted_and_resumed_is_bit_identical(tmp_path, monkeypatch, capsys):
    # d * N = 256 * 32: the blocked engine (16 or 32 columns by the cache size); chunks end on block boundaries
    argv = ["run", "--d", "256", "--width", "32", "--steps", "40000", "--records", "12", "--no-progress", "--no-plot"]
    assert main([*argv, "--out", str(tmp_path), "--name", "whole"]) == 0
    state = _interrupt_after(monkeypatch, 3)
    assert main([*argv, "--out", str(tmp_path), "--name", "cut"]) == 130
    err = capsys.readouterr().err
    assert "quadfast run --resume" in err and "Traceback" not in err and state["n"] == 3
    ckpt = tmp_path / "cut.ckpt"
    assert ckpt.is_file() and not (tmp_path / "cut.npz").exists()
    monkeypatch.undo()
    assert main(["run", "--resume", str(ckpt), "--no-progress", "--no-plot"]) == 0
    a, b = load_result(tmp_path / "whole.npz"), load_result(tmp_path / "cut.npz")
    assert 0 < b.meta["resumed_from"] < b.meta["config"]["steps"] and b.meta["block"] == qf.default_block(256, 32, 1) > 1
    for k in ARRAYS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bit for bit, same record points
    assert not ckpt.exists()


@pytest.mark.parametrize("where", ["first-run", "second-run", "saving"])
def test_sweep_interrupted_at_any_point_loses_nothing_and_resumes_bit_identically(tmp_path, monkeypatch, where):
    cfg = load_config(_small_cfg(tmp_path, grid="seed = [0, 1, 2]"))
    ref = run_sweep(cfg, tmp_path / "ref", workers=1, progress=False)
    assert ref.complete
    if where == "saving":
        import quadfast.sweep as sw

        orig, n = sw.save_result, {"k": 0}

        def save(*a, **k):
            n["k"] += 1
            if n["k"] == 2:  # Ctrl-C while the second result is being written
                raise KeyboardInterrupt
            return orig(*a, **k)

        monkeypatch.setattr(sw, "save_result", save)
    else:  # inside the run of seed 0 (the first) or seed 1 (the second)
        _interrupt_after(monkeypatch, 3, seed=0 if where == "first-run" else 1)
    out = tmp_path / "cut"
    rep = run_sweep(cfg, out, workers=1, progress=False)
    assert rep.interrupted and not rep.complete
    kept = sorted(p.name for p in (out / "runs").glob("*.npz"))
    assert kept == sorted(f"{r}.npz" for r in rep.done)  # every finished result is on disk, whole
    assert not list((out / "runs").glob("*.tmp"))
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["run_id"] for r in rows} == set(rep.done)
    monkeypatch.undo()
    rep2 = run_sweep(cfg, out, workers=1, progress=False)
    assert rep2.complete and sorted(rep2.skipped) == sorted(rep.done)
    for rid in ref.runs:
        a, b = load_result(tmp_path / "ref" / "runs" / f"{rid}.npz"), load_result(out / "runs" / f"{rid}.npz")
        for k in ARRAYS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{rid} {k}")
    assert not list((out / "runs").glob("*.ckpt"))


def test_riccati_procedure_is_the_flow_from_the_simulators_start(tmp_path):
    p = get_procedure("riccati").resolve({"d": 128, "alpha": 1.5, "t_max": 5.0, "records": 12, "seed": 3})
    arrays, _ = get_procedure("riccati").execute(p)
    sim = StiefelSGD(qf.Teacher.power_law(128, 0.5, 1.5), p["width"], lr=1e-5, seed=3)
    coef, start = qf.riccati.start_from_simulator(sim)
    np.testing.assert_array_equal(arrays["risk"], qf.riccati.risk_curve(coef, arrays["time"], factor=start))
    assert arrays["risk"][0] == pytest.approx(sim.risk(), abs=1e-14)  # same Haar W0 as StiefelSGD(seed=3)
    cfg = parse_config('experiment = "single"\nprocedure = "riccati"\n[params]\nd = 128\n[grid]\nalpha = [1.0, 1.5]\n')
    rep = run_sweep(cfg, tmp_path, workers=1, progress=False)
    assert rep.complete and len(list(tmp_path.glob("runs/*.npz"))) == 2
    with pytest.raises(ConfigError, match="t_min"):
        parse_config('experiment = "single"\nprocedure = "riccati"\n[params]\nt_min = 2.0\nt_max = 1.0\n')


def test_procedure_checkpoint_refuses_other_parameters(tmp_path, monkeypatch):
    proc = get_procedure("stiefel-sgd")
    p = proc.resolve({"d": 64, "steps": 3000, "records": 5})
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupted) as info:
        proc.execute(p, checkpoint=tmp_path / "c.ckpt")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="checkpoint.*seed"):
        proc.execute(dict(p, seed=1), checkpoint=info.value.checkpoint, resume=True)


# ----------------------------------------------------------------------------- sweeps
def test_sweep_in_processes_reports_failures_and_skips_finished_runs(tmp_path, capsys):
    # label noise 1e300 overflows the first step (DivergenceError): runs that fail while
    # the others finish
    cfg = _small_cfg(tmp_path, grid="seed = [0, 1]\nnoise = [0.0, 1e300]")
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--workers", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("DivergenceError") == 2 and "Traceback" not in err.split("failed:")[0]
    man = json.loads((out / "sweep.json").read_text())
    good = [r["run_id"] for r in man["runs"] if r["params"]["noise"] == 0]
    bad = [r["run_id"] for r in man["runs"] if r["params"]["noise"] > 0]
    assert all((out / "runs" / f"{r}.npz").is_file() for r in good)
    assert all("DivergenceError" in (out / "runs" / f"{r}.error.txt").read_text() for r in bad)
    # results from worker processes equal those of this process, bit for bit
    p0 = man["runs"][0]["params"]
    arrays, _ = get_procedure("stiefel-sgd").execute(p0)
    res = load_result(out / "runs" / f"{man['runs'][0]['run_id']}.npz")
    for k in ARRAYS:
        np.testing.assert_array_equal(arrays[k], res[k])
    mtimes = {r: os.stat(out / "runs" / f"{r}.npz").st_mtime_ns for r in good}
    rep = run_sweep(load_config(cfg), out, workers=1, progress=False, log=lambda m: None)
    assert sorted(rep.skipped) == sorted(good) and sorted(rep.failed) == sorted(bad) and not rep.done
    assert mtimes == {r: os.stat(out / "runs" / f"{r}.npz").st_mtime_ns for r in good}  # not rewritten


def test_tidy_table_reads_with_pandas_and_matches_the_results(tmp_path):
    pd = pytest.importorskip("pandas")
    cfg = load_config(_small_cfg(tmp_path))
    rep = run_sweep(cfg, tmp_path / "o", workers=1, progress=False)
    df = pd.read_csv(rep.table)
    total = 0
    for rid in rep.runs:
        res = load_result(tmp_path / "o" / "runs" / f"{rid}.npz")
        sub = df[df.run_id == rid].sort_values("record")
        total += len(res["time"])
        np.testing.assert_array_equal(sub["risk"].to_numpy(), res["risk"])  # floats round-trip exactly
        np.testing.assert_array_equal(sub["steps"].to_numpy(), res["steps"])
        np.testing.assert_array_equal(sub["alignment_mean"].to_numpy(), res["alignment"].mean(axis=1))
        assert (sub["seed"] == res.meta["config"]["seed"]).all() and (sub["d"] == 64).all()
    assert len(df) == total


def test_sweep_on_a_dask_cluster_equals_the_local_sweep(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    cfg_path = _small_cfg(tmp_path, grid="seed = [0, 1, 2]")
    local = run_sweep(load_config(cfg_path), tmp_path / "local", workers=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tcp://")
        assert main(["sweep", str(cfg_path), "--out", str(tmp_path / "dask"), "--scheduler", addr, "--no-progress",
                     "--no-plot"]) == 0
    assert "3 runs done" in capsys.readouterr().out
    for rid in local.runs:
        a = load_result(tmp_path / "local" / "runs" / f"{rid}.npz")
        b = load_result(tmp_path / "dask" / "runs" / f"{rid}.npz")
        for k in ARRAYS:
            np.testing.assert_array_equal(a[k], b[k])
    assert main(["sweep", str(cfg_path), "--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler: cannot connect" in capsys.readouterr().err


# ----------------------------------------------------------------------------- plot and info
def test_plot_command_draws_from_result_files(tmp_path, capsys):
    cfg = _small_cfg(tmp_path, grid="seed = [0]")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress", "--no-plot"]) == 0
    assert not list((tmp_path / "o").glob("*.png"))
    assert main(["plot", str(tmp_path / "o"), "--out", str(tmp_path / "figs")]) == 0
    assert len(list((tmp_path / "figs").glob("run-*.png"))) == 1
    one = next((tmp_path / "o" / "runs").glob("*.npz"))
    assert main(["plot", str(one), "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one" / (one.stem + ".png")).read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_info_reports_threads_and_simd(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert qf._core.sampler_isa() in out and qf._core.variant in out and "threads" in out


def test_config_round_trip_from_string_names_its_source():
    with pytest.raises(ConfigError, match="^<string>: params.d"):
        parse_config('experiment = "single"\nprocedure = "stiefel-sgd"\n[params]\nd = 1\n')
