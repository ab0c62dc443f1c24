"""The C++ core is usable without Python: configure and build the standalone example
with CMake (Eigen from cmeel-eigen, a test requirement), run it, and check that it
learns and stays orthonormal.  Its numbers agree with the Python facade run on the
same seed and start."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpp_build(tmp_path_factory):
    """Configure the C++ core alone (no Python) with its examples, once per module."""
    cmake = shutil.which("cmake")
    assert cmake is not None, "cmake is a test requirement (pip install '.[test]')"
    if not (ROOT / "CMakeLists.txt").exists():
        pytest.skip("tests are running outside a source checkout")
    out = tmp_path_factory.mktemp("cpp")
    cfg = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(out), "-DQUADFAST_PYTHON=OFF", "-DQUADFAST_EXAMPLES=ON",
         "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}"],
        capture_output=True, text=True)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    # every example at once, on all cores (each is one large translation unit)
    res = subprocess.run([cmake, "--build", str(out), "--parallel", str(os.cpu_count() or 1)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr

    def build(target):
        res = subprocess.run([cmake, "--build", str(out), "--target", target], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        return next(p for p in out.rglob(target + "*")
                    if p.stem == target and p.is_file() and os.access(p, os.X_OK))

    return build


def _isa_targets(base):
    """The check compiled for the baseline, and as the AVX-512 extension is where this CPU
    runs that extension (its own micro-kernel in packed_gemm.hpp)."""
    from quadfast import _ext

    avx512 = "avx512" in _ext.supported() and platform.machine().lower() in ("x86_64", "amd64")
    return [base] + ([base + "_avx512"] if avx512 else [])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="interposes glibc's malloc")
@pytest.mark.parametrize("variant", ["baseline", "avx512"])
def test_step_loops_allocate_nothing(cpp_build, variant):
    """Heap allocations counted (malloc & co. interposed) over 500 steps after a warm-up:
    zero for the sequential, explicit-frame, batch-4 and blocked kernels (batch 1 and 4,
    one and two threads), float64 and float32, for StiefelKernel and EuclidKernel
    (sequential, batch 4, blocked with one and two threads), and the Stiefel engine's
    factored form requested in the packed products (width 160, two threads); a full
    re-orthonormalisation
    may allocate its N x N temporaries.  Baseline build, and the AVX-512 build where the
    CPU has AVX-512."""
    targets = _isa_targets("alloc_check")
    if variant == "avx512" and len(targets) == 1:
        pytest.skip("this CPU has no AVX-512")
    target = targets[0] if variant == "baseline" else targets[1]
    run = subprocess.run([str(cpp_build(target))], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [dict(kv.split("=") for kv in line.split()[1:]) for line in run.stdout.splitlines()]
    assert len(rows) == 14
    for row in rows:
        assert int(row["allocations"]) <= 16 * int(row["corrections"]), run.stdout
    assert sum(int(r["corrections"]) for r in rows) == 0 and sum(int(r["allocations"]) for r in rows) == 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["baseline", "avx512"])
def test_packed_products_equal_eigen_bit_for_bit(cpp_build, variant):
    """The blocked engines' products with Bm and Zm packed once (packed_gemm.hpp) give the
    same bits as the Eigen expressions they replace when all packed columns are used
    (6 shapes, panel multiples and not), and agree to rounding (1e-13 float64, 1e-5
    float32, relative to the terms' size) for blocks cut short; float64 and float32.
    The product P += W_b^T X_b (pgemm::gemm_add, 6 shapes) and the micro-kernel against
    Eigen's gebp on the same packed panels (10 shapes leaving every kind of panel) give
    Eigen's bits.  The products on row-major operands of the small-width pass
    (rowgemm.hpp, 8 shapes) agree with a float64 reference (1e-13 float64, 2e-6 float32,
    times sqrt(depth)), leave C's row padding alone, and give the same bits row by row as
    for all rows at once; so do their Gram sums G += X^T X (8 shapes: the lower triangle
    against the reference within 4 eps sqrt(depth) of the terms' summed sizes, the rest of G untouched, and a trailing
    block of columns with the same bits as all of them).  The formation's product (D^T packed from the column-major D
    read as row-major, times W_b^T as it lies; 5 shapes) gives Eigen's bits for `C += D^T W_b^T` and, transposed,
    W_b D to 1e-13 (float64) or 1e-5 (float32) times sqrt(N).  Baseline build, and the AVX-512 build (where both
    kernels are quadfast's own) where the CPU has AVX-512."""
    targets = _isa_targets("packed_gemm_check")
    if variant == "avx512" and len(targets) == 1:
        pytest.skip("this CPU has no AVX-512")
    target = targets[0] if variant == "baseline" else targets[1]
    run = subprocess.run([str(cpp_build(target))], capture_output=True, text=True, timeout=300)
    rows = [line.split() for line in run.stdout.splitlines()]
    packed = [r for r in rows if r[0] in ("float64", "float32")]
    other = [r for r in rows if r[0] in ("gemm", "gebp")]
    direct = [r for r in rows if r[0] == "rowgemm"]
    gram = [r for r in rows if r[0] == "rowgram"]
    form = [r for r in rows if r[0] == "formation"]
    assert (len(packed) == 16 and len(other) == 32 and len(direct) == 24 and len(gram) == 16 and len(form) == 10
            and len(rows) == 98), run.stdout + run.stderr
    assert all(r[-2:] == ["identical=1", "close=1"] for r in form), run.stdout
    assert all(r[-2:] == ["close=1", "split_identical=1"] for r in direct), run.stdout
    assert all(r[-2:] == ["close=1", "sub_identical=1"] for r in gram), run.stdout
    for row in packed:
        full = row[3] == row[4]
        assert row[-1] == "ok=1" and (row[5] == "identical=1" if full else row[6] == "close=1"), run.stdout
    assert sum(row[3] == row[4] for row in packed) == 12
    assert all(row[-1] == "identical=1" for row in other), run.stdout
    assert run.returncode == 0


@pytest.mark.slow
def test_standalone_example_builds_and_learns(cpp_build):
    exe = cpp_build("stiefel_example")
    run = subprocess.run([str(exe), "128", "4", "60000", "0.004", "3"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    # quadfast::default_block, as in Python; W kept factored between passes (d >= 16 N)
    assert lines[0] == "d 128 width 4 block 16 threads 1 factored 1"
    risks = [float(l.split()[3]) for l in lines if l.startswith("step")]
    orth = float(next(l for l in lines if l.startswith("orth_error")).split()[1])
    assert lines[-1].endswith("us per step (advance only)")
    assert risks[0] > 0.9 and risks[-1] < 0.5 * risks[0]  # it learns
    assert orth < 1e-12
    # the same run through the Python facade: same sampler, same kernel, same numbers
    import quadfast as qf
    from quadfast._ext import core as _core

    d, N = 128, 4
    G = np.array([[_core.normal_at(3, 1 << 30, i * N + j) for j in range(N)] for i in range(d)])
    q, r = np.linalg.qr(G)
    W0 = q * np.sign(np.diag(r))
    teacher = qf.Teacher(qf.power_law_coef(N, 1.0), d=d)
    sim = qf.StiefelSGD(teacher, N, lr=0.004 / d, seed=3, W0=W0)
    sim.run(60000)
    assert sim.risk() == pytest.approx(risks[-1], abs=1e-4)
    # block 1 (the C++ constructor's default): the sequential kernel, on the same samples,
    # equal to the blocked engine to rounding over a short run; bad arguments: a usage line
    args = [str(exe), "128", "4", "64", "0.004", "3", "2"]
    short = [subprocess.run(args + b, capture_output=True, text=True, timeout=60)
             for b in (["1"], ["0"], ["0", "0"])]
    assert [r.stdout.splitlines()[0] for r in short] == [f"d 128 width 4 block {b} threads 2 factored {f}"
                                                          for b, f in ((1, 0), (16, 1), (16, 0))]
    risk_lines = [[l for l in r.stdout.splitlines() if l.startswith("step")] for r in short]
    assert len(risk_lines[0]) == 12 and risk_lines[0] == risk_lines[1] == risk_lines[2]  # risks to 6 digits
    # steps per advance call: 64 steps in calls of 16, a risk line after each
    calls = subprocess.run(args + ["0", "1", "16"], capture_output=True, text=True, timeout=60)
    assert [l.split()[1] for l in calls.stdout.splitlines() if l.startswith("step")] == ["0", "16", "32", "48", "64"]
    bad = subprocess.run([str(exe), "128", "4", "10", "0.004", "3", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr
