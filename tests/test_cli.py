"""The main job: `quadfast run` writes a self-describing result and a plot; bad input
gets a one-line error naming the parameter, with no traceback."""
import os

import numpy as np
import pytest

import quadfast as qf
from quadfast.cli import main
from quadfast.results import load_result, save_result


def test_run_writes_result_plot_and_table(tmp_path, capsys):
    code = main(["run", "--d", "64", "--t-max", "0.3", "--lr-d", "0.002", "--records", "10", "--out", str(tmp_path),
                 "--name", "small", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "risk" in out and "A_1" in out and "result:" in out
    res = load_result(tmp_path / "small.npz")
    assert res.meta["kind"] == "stiefel-run"
    cfg = res.meta["config"]
    assert cfg["d"] == 64 and cfg["width"] == cfg["r"] == 8 and cfg["seed"] == 0
    assert res.meta["machine"]["quadfast"] == qf.__version__
    assert res.meta["timings"]["steps_done"] == cfg["steps"]
    assert set(res) >= {"steps", "time", "risk", "alignment", "orth_error", "coef", "flow_risk"}
    assert res["alignment"].shape == (len(res["steps"]), 8)
    np.testing.assert_allclose(res["time"], cfg["lr"] * res["steps"])
    # the recorded risk is the risk of the final weights of an identical simulator
    sim = qf.StiefelSGD(qf.Teacher.power_law(64, 0.5, 1.0), 8, lr=cfg["lr"], seed=0)
    sim.run(cfg["steps"])
    assert res["risk"][-1] == pytest.approx(sim.risk(), abs=1e-12)
    # the flow overlay starts where the run starts
    assert res["flow_risk"][0] == pytest.approx(res["risk"][0], abs=1e-12)
    png = (tmp_path / "small.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("argv,name", [
    (["--d", "0"], "d"),
    (["--beta", "1.5"], "beta"),
    (["--width", "1000"], "width"),
    (["--lr-d", "-1"], "lr_d"),
    (["--batch", "0"], "batch"),
    (["--noise", "-0.1"], "noise"),
    (["--steps", "0"], "steps"),
    (["--t-max", "0"], "t_max"),
    (["--t-max", "-1"], "t_max"),
    (["--alpha", "-1"], "alpha"),
])
def test_run_rejects_bad_parameters(tmp_path, capsys, argv, name):
    code = main(["run", "--d", "64", "--out", str(tmp_path), "--no-progress", *argv] if "--d" not in argv
                else ["run", "--out", str(tmp_path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("quadfast: error:") and name in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.npz"))


def test_run_reports_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["run", "--d", "64", "--t-max", "0.01", "--out", str(blocker / "sub"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and "Traceback" not in err


def test_unknown_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--frobnicate", "3"])
    assert info.value.code == 2 and "frobnicate" in capsys.readouterr().err


def test_result_files_round_trip_and_never_leave_partial_files(tmp_path):
    p = save_result(tmp_path / "r", {"a": np.arange(3.0)}, {"kind": "test", "config": {"x": np.float64(1.5)}})
    res = load_result(p)
    assert p.suffix == ".npz" and res.meta["config"]["x"] == 1.5 and np.array_equal(res["a"], [0, 1, 2])
    with pytest.raises(ValueError, match="arrays"):
        save_result(tmp_path / "bad", {"__meta__": np.zeros(1)}, {})
    assert sorted(os.listdir(tmp_path)) == ["r.npz"]


def test_info_runs(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "sampler_isa" in out and qf.__version__ in out
