"""Peak resident memory of a Stiefel run against the budget of issue 4 (1.5 W plus one
block of samples), with the factored form as it is by default, on request, or off.

Each configuration runs in a fresh process (as tests/test_memory.py does): the peak
(VmHWM) is reset through /proc/self/clear_refs once the simulator is built, and glibc's
mmap threshold is fixed so that freed memory is not counted as resident.  The run is
`calls` calls of max(3 blocks, 2 N steps), long enough for the factored form (which
needs stretches of 2 N steps).  With `--warm D` the same configuration first runs at
d = D and is freed before the base is read, so that the process's one-time costs (code
pages of the extension, OpenBLAS and NumPy touched for the first time, modules imported on
first use) are not counted: they do not grow with W, and at small W they exceed the budget
by themselves (tests/test_memory.py).  Linux only.

    python benchmarks/memory_peak.py 8192 512 --form on --calls 2
    python benchmarks/memory_peak.py 16384 1024 --form off --calls 1
    python benchmarks/memory_peak.py 4096 64 --threads 2 --warm 1024
"""
import argparse
import os
import subprocess
import sys

CHILD = r"""
import ctypes, gc, sys
import quadfast as qf

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

d, n, form, calls, threads, warm = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]),
                                    int(sys.argv[5]), int(sys.argv[6]))

def build(dd):
    teacher = qf.Teacher(qf.power_law_coef(min(n, 64), 1.0), d=dd)
    sim = qf.StiefelSGD(teacher, n, lr=1e-3 / dd, W0=qf.haar_stiefel(dd, n, seed=0), threads=threads)
    if form != "default":
        sim._kernel.factored = form == "on"
    return sim, -(-max(3 * sim.block, 2 * n) // sim.block) * sim.block

if warm:
    sim, call = build(warm)
    sim.run(calls * call, record=[i * call for i in range(calls + 1)])
    del sim
    gc.collect()
    # freed chunks below the mmap threshold stay resident in the heap, where the measured
    # simulator would reuse them uncounted: return them to the kernel (glibc)
    ctypes.CDLL(None).malloc_trim(0)
gc.collect()
base = status("VmRSS")
sim, call = build(d)
gc.collect()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
sim.run(calls * call, record=[i * call for i in range(calls + 1)])
used = status("VmHWM") - base
budget = 1.5 * sim.W.nbytes + sim.block * d * sim.W.itemsize
print(f"| ({d}, {n}) | {threads} | {form} | {sim._kernel.factored} | {warm or '-'} | {calls} x {call} | "
      f"{sim._kernel.formations} | {used / 2**20:.2f} | {budget / 2**20:.2f} | {'yes' if used <= budget else 'no'} |")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("d", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--form", choices=["default", "on", "off"], default="default",
                    help="the factored form: as by default, requested, or turned off")
    ap.add_argument("--calls", type=int, default=2, help="calls of max(3 blocks, 2 N steps)")
    ap.add_argument("--threads", type=int, default=1, help="the simulator's threads")
    ap.add_argument("--warm", type=int, default=0, metavar="D",
                    help="first run and free the same configuration at d = D (0: no warm-up)")
    a = ap.parse_args()
    if a.d < 1 or a.n < 1 or a.n > a.d:
        ap.error("need 1 <= n <= d")
    if a.calls < 1:
        ap.error("--calls must be >= 1")
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    if a.warm and not a.n <= a.warm:
        ap.error("--warm D needs n <= D")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    print("| (d, N) | threads | form | factored | warm-up d | calls x steps | formations | peak MiB | budget MiB "
          "| within |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    r = subprocess.run([sys.executable, "-c", CHILD, str(a.d), str(a.n), a.form, str(a.calls), str(a.threads),
                        str(a.warm)],
                       capture_output=True, text=True, env=env, cwd=os.path.expanduser("~"))
    if r.returncode != 0:
        sys.exit(r.stderr)
    print(r.stdout.strip())


if __name__ == "__main__":
    main()
