"""Peak memory of the blocked engine: at most 1.5x the size of W plus one block of samples.

Measured in a fresh process from the kernel's resident set: the peak (VmHWM) is reset
through /proc/self/clear_refs after the simulator is built, so the start's QR and the
copy of W0 are not counted; what remains is W itself, the engine's workspace, the sample
block and whatever Python allocates while recording.  glibc's malloc raises its mmap
threshold after large blocks are freed and then keeps freed memory in the heap, where it
still counts as resident; the subprocess fixes the threshold (MALLOC_MMAP_THRESHOLD_) so
that the resident set shows what is allocated, not what the allocator caches.

At small W the first simulator of a process also pays one-time costs that do not grow
with W: code pages of the extension, OpenBLAS and NumPy touched for the first time,
Python modules imported on first use (about 2.5 MiB at (4096, 64), over a 3.75 MiB
budget; measured with /proc/self/smaps, 2-core Zen 5 VM).  The cases with a `warm` size
first run the same configuration at d = warm (small, so that its own buffers are small),
free it and return the freed heap to the kernel (malloc_trim, so that the measured
simulator cannot reuse resident chunks uncounted); those costs then sit in the base, and
so do the stack pages the warm-up touched (at most 64 KiB per thread at N = 64).
"""
import os
import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import ctypes, gc, json, sys
    import numpy as np
    import quadfast as qf

    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    d, n, dtype, batch, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    factored, warm = sys.argv[6] == "1", int(sys.argv[7])

    def build(dd):
        teacher = qf.Teacher(qf.power_law_coef(min(n, 64), 1.0), d=dd)
        W0 = qf.haar_stiefel(dd, n, seed=0).astype(dtype)
        sim = qf.StiefelSGD(teacher, n, lr=1e-3 / dd, W0=W0, dtype=dtype, batch=batch, threads=threads)
        # the factored form, on request above width 128, needs calls of at least 2 N steps
        calls = 2 * sim.block
        if factored:
            sim._kernel.factored = True
            calls = -(-2 * n // sim.block) * sim.block
        return sim, calls

    if warm:  # the same configuration at d = warm, run and freed
        sim, calls = build(warm)
        sim.run(3 * calls, record=[0, calls, 2 * calls, 3 * calls])
        del sim
        gc.collect()
        # freed chunks below the mmap threshold stay resident in the heap, where the
        # measured simulator would reuse them uncounted: return them to the kernel
        ctypes.CDLL(None).malloc_trim(0)
    gc.collect()
    base = status("VmRSS")
    sim, calls = build(d)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak resident set to the current one
    sim.run(3 * calls, record=[0, calls, 2 * calls, 3 * calls])
    peak = status("VmHWM")
    print(json.dumps(dict(base=base, peak=peak, W=sim.W.nbytes, block=sim.block,
                          formations=int(sim._kernel.formations),
                          sample_block=sim.block * batch * d * np.dtype(dtype).itemsize)))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("d,n,dtype,batch,threads,factored,warm", [(8192, 512, "float64", 1, 1, False, 0),
                                                                   (8192, 512, "float64", 1, 2, False, 0),
                                                                   (16384, 512, "float32", 1, 2, False, 0),
                                                                   (8192, 512, "float64", 8, 2, False, 0),
                                                                   (16384, 1024, "float64", 1, 2, True, 0),
                                                                   (4096, 64, "float64", 1, 1, True, 1024),
                                                                   (4096, 64, "float64", 1, 2, True, 1024)])
def test_peak_memory_within_one_and_a_half_W_plus_a_sample_block(d, n, dtype, batch, threads, factored, warm,
                                                                 tmp_path):
    """At (8192, 512) the calls (2 blocks) are too short for the factored form; at
    (16384, 1024) it is requested and runs (calls of 2 N steps): its D, E and packed D
    (3 N^2, 24 MiB) fit there, and not at (8192, 512) (58.9 MiB against 54.0,
    benchmarks/memory_peak.py).  (4096, 64), the width-64 target's size, with the form
    requested (the default there with AVX-512), after a warm-up run at d = 1024."""
    # run outside the checkout, so that the installed package is imported
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(d), str(n), dtype, str(batch), str(threads),
                          "1" if factored else "0", str(warm)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    if run.returncode != 0 and "clear_refs" in run.stderr:
        pytest.skip("this kernel does not allow resetting the peak resident set")
    assert run.returncode == 0, run.stderr
    m = json.loads(run.stdout.strip().splitlines()[-1])
    assert m["block"] > 1  # the blocked engine is what is measured
    assert (m["formations"] > 0) == factored
    used = m["peak"] - m["base"]
    budget = 1.5 * m["W"] + m["sample_block"]
    assert used <= budget, f"peak {used / 2**20:.1f} MiB > {budget / 2**20:.1f} MiB (W {m['W'] / 2**20:.1f} MiB)"
    assert used >= m["W"]  # the measurement sees W itself
