"""Seed 002's two-stage algorithm in the research workflow: the ``two-stage`` procedure
(phase I as ``stiefel-sgd``, phase II as ``quadfast.finetune`` on the same W), Ctrl-C in
phase II, and the shipped ``two_stage`` configuration at reduced size."""
import json

import numpy as np
import pytest

import quadfast as qf
import quadfast.radial
from quadfast.cli import main
from quadfast.config import ConfigError, load_config, parse_config, shipped_path
from quadfast.procedures import Interrupted, get_procedure

PHASE1 = ("steps", "time", "risk", "alignment", "orth_error", "samples", "flops", "flow_risk", "flow_alignment")
PHASE2 = ("B", "Omega", "finetune_risk", "finetune_risk_psd", "finetune_risk_start", "optimum_risk")


def _params(**kw):
    base = {"d": 64, "steps": 3000, "records": 5, "noise": 0.1, "finetune_n": 900, "seed": 2}
    base.update(kw)
    return get_procedure("two-stage").resolve(base)


def test_phase_one_is_stiefel_sgd_and_phase_two_is_finetune():
    p = _params()
    arrays, info = get_procedure("two-stage").execute(p)
    sp = get_procedure("stiefel-sgd")
    ref, _ = sp.execute(sp.resolve({k: v for k, v in p.items() if k in sp.params and v is not None and k not in
                                    ("lr", "t_max", "r")}))
    for k in PHASE1:  # the same phase I, bit for bit
        np.testing.assert_array_equal(arrays[k], ref[k])
    # phase II: quadfast.finetune on a simulator run to the same step (one call here, so
    # rounding may differ from the recorded run's: B to 1e-9)
    sim = qf.StiefelSGD(qf.Teacher.power_law(p["d"], p["beta"], p["alpha"], noise=p["noise"]), p["width"],
                        lr=p["lr"], seed=p["seed"])
    sim.run(p["steps"])
    res = qf.finetune(sim, n=p["finetune_n"], seed=p["finetune_seed"], tol=p["finetune_tol"])
    np.testing.assert_allclose(arrays["B"], res.B, rtol=1e-9, atol=1e-12)
    assert info["finetune"]["n"] == 900 and info["finetune"]["sample_seed"] == res.sample_seed
    assert info["finetune"]["iterations"] == res.iterations and info["finetune"]["converged"]
    # sim.risk() is the risk of the best B for this W: no fit beats it
    assert float(arrays["optimum_risk"]) == pytest.approx(float(arrays["risk"][-1]), rel=1e-12)
    assert float(arrays["finetune_risk"]) >= float(arrays["optimum_risk"]) - 1e-12
    assert float(arrays["finetune_risk_psd"]) >= float(arrays["optimum_risk"]) - 1e-12
    assert set(PHASE2) <= set(info["arrays"])


def test_default_sample_count_is_four_per_unknown():
    p = get_procedure("two-stage").resolve({"d": 64, "width": 5})
    assert p["finetune_n"] == 2 * 5 * 6


def test_interrupted_in_phase_two_resumes_bit_identically(tmp_path, monkeypatch):
    proc = get_procedure("two-stage")
    p = _params()
    whole, _ = proc.execute(p)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(quadfast.radial, "finetune", interrupted)
    with pytest.raises(Interrupted) as info:
        proc.execute(p, checkpoint=tmp_path / "t.ckpt")
    assert info.value.steps_done == p["steps"]  # phase I had finished: it is in the checkpoint
    monkeypatch.undo()
    arrays, meta = proc.execute(p, checkpoint=tmp_path / "t.ckpt", resume=True)
    assert meta["resumed_from"] == p["steps"]
    for k in PHASE1 + PHASE2:
        np.testing.assert_array_equal(arrays[k], whole[k])


def test_two_stage_configuration_reduced(tmp_path):
    cfg = load_config(shipped_path("two_stage")).reduce()
    assert main(["run", str(shipped_path("two_stage")), "--reduced", "--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert run["n"] == cfg.runs()[0]["finetune_n"] and run["residual"] <= 1e-6
    assert run["finetune_risk"] >= run["optimum_risk"] - 1e-12
    assert list(tmp_path.glob("run-*.png"))


@pytest.mark.parametrize("params, key", [("finetune_n = 0", "finetune_n"), ("finetune_tol = 0.0", "finetune_tol"),
                                         ("finetune_seed = -1", "finetune_seed")])
def test_configuration_errors_name_the_key(params, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(f'experiment = "single"\nprocedure = "two-stage"\n[params]\n{params}\n')
