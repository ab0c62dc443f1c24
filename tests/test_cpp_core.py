"""The C++ core is usable without Python: configure and build the standalone example
with CMake (Eigen from cmeel-eigen, a test requirement), run it, and check that it
learns and stays orthonormal.  Its numbers agree with the Python facade run on the
same seed and start."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_standalone_example_builds_and_learns(tmp_path):
    cmake = shutil.which("cmake")
    assert cmake is not None, "cmake is a test requirement (pip install '.[test]')"
    if not (ROOT / "CMakeLists.txt").exists():
        pytest.skip("tests are running outside a source checkout")
    env = dict(os.environ)
    cfg = subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path), "-DQUADFAST_PYTHON=OFF", "-DQUADFAST_EXAMPLES=ON",
         "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}"],
        capture_output=True, text=True, env=env)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    build = subprocess.run([cmake, "--build", str(tmp_path), "--target", "stiefel_example"],
                           capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stdout + build.stderr
    exe = next(p for p in tmp_path.rglob("stiefel_example*") if p.is_file() and os.access(p, os.X_OK))
    run = subprocess.run([str(exe), "128", "4", "60000", "0.004", "3"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    risks = [float(l.split()[3]) for l in lines if l.startswith("step")]
    orth = float(lines[-1].split()[1])
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
