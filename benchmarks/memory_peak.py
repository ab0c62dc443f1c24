"""Peak resident memory of a Stiefel run against the budget of issue 4 (1.5 W plus one
block of samples), with the factored form as it is by default, on request, or off.

Each configuration runs in a fresh process (as tests/test_memory.py does): the peak
(VmHWM) is reset through /proc/self/clear_refs once the simulator is built, and glibc's
mmap threshold is fixed so that freed memory is not counted as resident.  The run is
`calls` calls of max(3 blocks, 2 N steps), long enough for the factored form (which
needs stretches of 2 N steps).  Linux only.

    python benchmarks/memory_peak.py 8192 512 --form on --calls 2
    python benchmarks/memory_peak.py 16384 1024 --form off --calls 1
"""
import argparse
import os
import subprocess
import sys

CHILD = r"""
import gc, sys
import quadfast as qf

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

d, n, form, calls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
teacher = qf.Teacher(qf.power_law_coef(min(n, 64), 1.0), d=d)
gc.collect()
base = status("VmRSS")
W0 = qf.haar_stiefel(d, n, seed=0)
sim = qf.StiefelSGD(teacher, n, lr=1e-3 / d, W0=W0)
if form != "default":
    sim._kernel.factored = form == "on"
del W0
gc.collect()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
call = -(-max(3 * sim.block, 2 * n) // sim.block) * sim.block
sim.run(calls * call, record=[i * call for i in range(calls + 1)])
used = status("VmHWM") - base
budget = 1.5 * sim.W.nbytes + sim.block * d * sim.W.itemsize
print(f"| ({d}, {n}) | {form} | {sim._kernel.factored} | {calls} x {call} | {sim._kernel.formations} | "
      f"{used / 2**20:.1f} | {budget / 2**20:.1f} | {'yes' if used <= budget else 'no'} |")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("d", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--form", choices=["default", "on", "off"], default="default",
                    help="the factored form: as by default, requested, or turned off")
    ap.add_argument("--calls", type=int, default=2, help="calls of max(3 blocks, 2 N steps)")
    a = ap.parse_args()
    if a.d < 1 or a.n < 1 or a.n > a.d:
        ap.error("need 1 <= n <= d")
    if a.calls < 1:
        ap.error("--calls must be >= 1")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    print("| (d, N) | form | factored | calls x steps | formations | peak MiB | budget MiB | within |")
    print("|---|---|---|---|---|---|---|---|")
    r = subprocess.run([sys.executable, "-c", CHILD, str(a.d), str(a.n), a.form, str(a.calls)],
                       capture_output=True, text=True, env=env, cwd=os.path.expanduser("~"))
    if r.returncode != 0:
        sys.exit(r.stderr)
    print(r.stdout.strip())


if __name__ == "__main__":
    main()
