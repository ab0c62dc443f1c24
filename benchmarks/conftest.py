"""Collects per-step timings from the benchmarks of one run and prints the ratios
(quadfast vs the NumPy references) measured in that same process.

The table is also written to ``benchmarks/results/<name>.md`` and ``.json`` (folder
ignored by git) so that the README quotes exactly what a run measured.
"""
import json
import os
import platform
from collections import defaultdict
from pathlib import Path

import pytest

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
        t = TIMINGS[key]
        q, q1, r1, ref = t.get("quadfast"), t.get("quadfast_block1"), t.get("numpy_rank_one"), t.get("reference")
        if q is None:
            continue
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        ratio = lambda v: "-" if v is None else f"{v / q:.1f}x"  # noqa: E731
        nr = t.get("quadfast_noreortho")
        lines.append(f"| {key} | {fmt(q)} | {fmt(q1)} | {fmt(r1)} | {fmt(ref)} | {ratio(r1)} | {ratio(ref)} | {fmt(nr)} |")
        rows.append(dict(case=str(key), **t))
    text = "\n".join(lines)
    print("\n\nper-step times and ratios measured in this run\n" + text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = os.environ.get("QUADFAST_BENCH_NAME", "latest")
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(dict(machine=_cpu(), cores=os.cpu_count(), rows=rows), indent=1))
