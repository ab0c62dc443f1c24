"""Smoke run of benchmarks/block_sweep.py (the harness behind default_block's figures):
tiny sizes, both students, correctness only."""
import pytest

import block_sweep  # benchmarks/ is on sys.path (conftest.py)


@pytest.mark.parametrize("student", ["stiefel", "euclid"])
def test_block_sweep_runs(student, capsys):
    res = block_sweep.main(["512", "160", "16,32", "--student", student, "--seconds", "0.01", "--rounds", "2"])
    assert set(res) == {16, 32} and all(0 < lo <= med for lo, med in res.values())
    assert "| 16 |" in capsys.readouterr().out


def test_block_sweep_batch(capsys):
    """--batch: blocks of k steps of B samples, against the sequential rank-B kernel (1)."""
    res = block_sweep.main(["256", "4", "1,4", "--batch", "4", "--seconds", "0.01", "--rounds", "2"])
    assert set(res) == {1, 4} and all(0 < lo <= med for lo, med in res.values())
    assert "batch 4" in capsys.readouterr().out
