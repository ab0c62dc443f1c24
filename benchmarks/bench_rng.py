"""Nanoseconds per standard normal: quadfast's counter-based ziggurat (`_core.fill_normals`,
float64 and float32, into a preallocated array) against
`numpy.random.Generator.standard_normal(out=...)` (PCG64, float64), one thread, in the
same process and run.  The conftest prints the table with the ratios.

Shapes (streams x length), 2**14 or 2**20 normals per call:
  (1, 2**14): one stream, with the process-wide table of position hashes (rows up to 2**17);
  (1, 2**20): one stream, positions hashed on the fly (two hashes per normal);
  (64, 2**14): 64 rows of d = 16384 (64 samples of a d = 16384 run): one shared table of
  position hashes, the path the Stiefel kernel uses.

Run:  pytest benchmarks/bench_rng.py            (all shapes)
      pytest benchmarks/bench_rng.py --quick    (the smallest shape)
"""
import math

import numpy as np
import pytest

from quadfast._ext import core as _core

SHAPES = [(1, 1 << 14), (1, 1 << 20), (64, 1 << 14)]


def pytest_generate_tests(metafunc):
    if "shape" in metafunc.fixturenames:
        cases = SHAPES[:1] if metafunc.config.getoption("--quick") else SHAPES
        metafunc.parametrize("shape", cases, ids=[f"{s}x{n}" for s, n in cases])


def _rounds(n):
    return 200 if n <= 1 << 14 else 20


def _check_normal(x):
    """Mean and variance within 6 standard errors of N(0, 1)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    assert np.all(np.isfinite(x))
    assert abs(x.mean()) < 6 / math.sqrt(x.size)
    assert abs(x.var() - 1) < 6 * math.sqrt(2 / x.size)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_quadfast_fill_normals(benchmark, shape, dtype, record_rng):
    out = np.empty(shape, dtype=dtype)
    seed = 42
    benchmark.group = f"normals {shape[0]}x{shape[1]}"
    benchmark.pedantic(_core.fill_normals, args=(out, seed, 0), rounds=_rounds(out.size), iterations=1,
                       warmup_rounds=2)
    _check_normal(out)
    s, i = shape[0] - 1, shape[1] - 1  # last row's last element, as drawn on its own
    assert out[s, i] == dtype(_core.normal_at(seed, s, i))
    record_rng(shape, "quadfast" if dtype == np.float64 else "quadfast_f32", benchmark, out.size)


def test_numpy_standard_normal(benchmark, shape, record_rng):
    out = np.empty(shape)
    flat = out.reshape(-1)
    gen = np.random.default_rng(42)
    benchmark.group = f"normals {shape[0]}x{shape[1]}"
    benchmark.pedantic(gen.standard_normal, kwargs=dict(out=flat), rounds=_rounds(out.size), iterations=1,
                       warmup_rounds=2)
    _check_normal(out)
    record_rng(shape, "numpy", benchmark, out.size)
