"""Collects per-step timings from the benchmarks of one run and prints the ratios
(quadfast vs the NumPy references) measured in that same process.

The table is also written to ``benchmarks/results/<name>.md`` and ``.json`` (folder
ignored by git) so that the README quotes exactly what a run measured.
"""
import json
import os
import platform
import sys
from collections import defaultdict
from pathlib import Path

import pytest

# the benchmarks share benchmarks/_interleave.py (scripts run from here find it anyway)
sys.path.insert(0, str(Path(__file__).resolve().parent))

TIMINGS = defaultdict(dict)  # (group key) -> {implementation: seconds per step}
RNG_TIMINGS = defaultdict(dict)  # (streams, length) -> {implementation: seconds per normal}


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="only the smallest sizes (a smoke run)")


@pytest.fixture
def record_per_step(request):
    def record(key, impl, benchmark, steps_per_round):
        st = benchmark.stats.stats if benchmark.stats is not None else None
        if st is None:  # --benchmark-disable
            return
        TIMINGS[key][impl] = st.min / steps_per_round
    return record


@pytest.fixture
def record_rng(request):
    def record(key, impl, benchmark, n_normals):
        st = benchmark.stats.stats if benchmark.stats is not None else None
        if st is None:  # --benchmark-disable
            return
        RNG_TIMINGS[key][impl] = st.min / n_normals
    return record


def _rng_table():
    """Table of ns per normal (bench_rng.py), or None when nothing was timed."""
    if not RNG_TIMINGS:
        return None
    from quadfast._ext import core as _core

    lines = [f"machine: {_cpu()}, {os.cpu_count()} cores, extension {_core.variant}, sampler {_core.sampler_isa()}",
             "", "| streams x length | quadfast f64 (ns/normal) | quadfast f32 | NumPy standard_normal | NumPy / quadfast |",
             "|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v * 1e9:.2f}"  # noqa: E731
    for key in sorted(RNG_TIMINGS, key=str):
        t = RNG_TIMINGS[key]
        q, q32, npy = t.get("quadfast"), t.get("quadfast_f32"), t.get("numpy")
        ratio = "-" if q is None or npy is None else f"{npy / q:.1f}x"
        lines.append(f"| {key[0]} x {key[1]} | {fmt(q)} | {fmt(q32)} | {fmt(npy)} | {ratio} |")
    return "\n".join(lines)


def _cpu():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def pytest_sessionfinish(session, exitstatus):
    rng_text = _rng_table()
    if rng_text is not None:
        print("\n\nGaussian sampler, ns per normal, measured in this run\n" + rng_text)
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        name = os.environ.get("QUADFAST_BENCH_NAME", "latest")
        (out / f"{name}_rng.md").write_text(rng_text + "\n")
    if not TIMINGS:
        return
    from quadfast._ext import core as _core

    lines = [f"machine: {_cpu()}, {os.cpu_count()} cores, extension {_core.variant}",
             "", "| (d, N) | quadfast (s/step) | quadfast block=1 | NumPy rank-one | reference | vs rank-one | vs reference | no reortho |",
             "|---|---|---|---|---|---|---|---|"]
    rows = []
    for key in sorted(TIMINGS, key=str):
        if isinstance(key, tuple) and key and key[0] == "engine":
            continue
        t = TIMINGS[key]
        q, q1, r1, ref = t.get("quadfast"), t.get("quadfast_block1"), t.get("numpy_rank_one"), t.get("reference")
        if q is None:
            continue
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        ratio = lambda v: "-" if v is None else f"{v / q:.1f}x"  # noqa: E731
        nr = t.get("quadfast_noreortho")
        lines.append(f"| {key} | {fmt(q)} | {fmt(q1)} | {fmt(r1)} | {fmt(ref)} | {ratio(r1)} | {ratio(ref)} | {fmt(nr)} |")
        rows.append(dict(case=str(key), **t))
    lines += _engine_table()
    text = "\n".join(lines)
    print("\n\nper-step times and ratios measured in this run\n" + text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = os.environ.get("QUADFAST_BENCH_NAME", "latest")
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(dict(machine=_cpu(), cores=os.cpu_count(), rows=rows), indent=1))


def _engine_table():
    """bench_engine.py: seconds per step, flop rate against dgemm, threads, float32."""
    eng = {k: v for k, v in TIMINGS.items() if isinstance(k, tuple) and k and k[0] == "engine"}
    cases = sorted(k for k in eng if len(k) == 5 and k[1] != "record")
    if not cases:
        return []
    spf = eng.get(("engine", "dgemm"), {}).get("flops")  # seconds per flop of dgemm
    dgemm = None if spf is None else 1e-9 / spf
    out = ["", f"blocked engine (batch 1, sampling included); NumPy dgemm: "
                f"{'-' if dgemm is None else f'{dgemm:.1f}'} GFlop/s",
           "| (d, N) | dtype | threads | s/step | GFlop/s (6dN) | of dgemm | vs NumPy rank-one | vs reference "
           "| vs 1 thread | float32 vs float64 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    for key in cases:
        _, d, n, dtype, threads = key
        t = eng[key]["quadfast"]
        gf = 6.0 * d * n / t / 1e9
        frac = "-" if dgemm is None else f"{100 * gf / (dgemm * threads):.0f}%" + (" of 2x" if threads == 2 else "")
        base = TIMINGS.get((d, n), {})
        r1, ref = base.get("numpy_rank_one"), base.get("reference")
        one = eng.get(("engine", d, n, dtype, 1), {}).get("quadfast")
        f64 = eng.get(("engine", d, n, "float64", threads), {}).get("quadfast")
        out.append(f"| ({d}, {n}) | {dtype} | {threads} | {t:.3g} | {gf:.1f} | {frac} | "
                   f"{'-' if r1 is None else f'{r1 / t:.1f}x'} | {'-' if ref is None else f'{ref / t:.0f}x'} | "
                   f"{'-' if one is None or threads == 1 else f'{one / t:.2f}x'} | "
                   f"{'-' if f64 is None or dtype == 'float64' else f'{f64 / t:.2f}x'} |")
    for key in sorted(k for k in eng if len(k) == 5 and k[1] == "record"):
        _, _, d, n, threads = key
        t = eng[key]["quadfast"]
        step = eng.get(("engine", d, n, "float64", threads), {}).get("quadfast")
        out.append(f"- a record point of run() (risk, alignment, exact max|W^T W - I|) at ({d}, {n}), {threads} "
                   f"thread(s): {t:.3g} s" + ("" if step is None else f", the time of {t / step:.0f} steps")
                   + "; not in the per-step figures")
    for key in sorted(k for k in eng if len(k) == 3 and k[1] == "normals"):
        d = key[2]
        tn = eng[key]["numpy"]
        for threads in (1, 2):
            step = eng.get(("engine", d, 1, "float64", threads), {}).get("quadfast")
            if step is not None:
                out.append(f"- width 1, d = {d}, {threads} thread(s): a whole step takes {step:.3g} s, NumPy draws "
                           f"d normals in {tn:.3g} s: the step is {step / tn:.2f} of that (target <= 0.33)")
    return out
