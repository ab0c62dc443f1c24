"""Smoke run of benchmarks/block_sweep.py (the harness behind default_block's figures):
tiny sizes, both students, correctness only."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("block_sweep", Path(__file__).with_name("block_sweep.py"))
block_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(block_sweep)


@pytest.mark.parametrize("student", ["stiefel", "euclid"])
def test_block_sweep_runs(student, capsys):
    res = block_sweep.main(["512", "160", "16,32", "--student", student, "--seconds", "0.01", "--rounds", "2"])
    assert set(res) == {16, 32} and all(0 < lo <= med for lo, med in res.values())
    assert "| 16 |" in capsys.readouterr().out
