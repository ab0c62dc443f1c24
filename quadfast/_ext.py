"""Chooses the compiled extension module for this CPU.

The package ships the C++ core compiled three times: ``_core`` (baseline x86-64 or the
native baseline elsewhere), ``_core_avx2`` (AVX2 + FMA) and ``_core_avx512``.  The best
one this CPU supports is used; set ``QUADFAST_ISA=baseline|avx2|avx512`` to force one
(an unsupported or missing choice is an error, not a silent fallback).

Results are bit-identical within one variant.  The Gaussian sampler gives the same bits
in every variant; other kernels may differ in the last bits between variants because
Eigen uses fused multiply-adds where the instruction set has them.
"""
from __future__ import annotations

import importlib
import os

_MODULES = {"baseline": "_core", "avx2": "_core_avx2", "avx512": "_core_avx512"}


def _cpu_features() -> dict:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    return feats


def supported() -> list[str]:
    """Variants this CPU can run, best first."""
    f = _cpu_features()
    out = []
    if all(f.get(k, False) for k in ("AVX512F", "AVX512DQ", "AVX512VL", "AVX512BW", "AVX2", "FMA3")):
        out.append("avx512")
    if f.get("AVX2", False) and f.get("FMA3", False):
        out.append("avx2")
    out.append("baseline")
    return out


def available() -> list[str]:
    """Variants that are both built and supported, best first."""
    names = []
    for v in supported():
        try:
            importlib.import_module(f"quadfast.{_MODULES[v]}")
        except ImportError:
            continue
        names.append(v)
    return names


def load(isa: str | None = None):
    isa = isa or os.environ.get("QUADFAST_ISA", "auto")
    if isa != "auto":
        if isa not in _MODULES:
            raise ValueError(f"QUADFAST_ISA: expected one of auto, {', '.join(_MODULES)}; got {isa!r}")
        if isa not in supported():
            raise ValueError(f"QUADFAST_ISA: this CPU does not support {isa!r} (supported: {supported()})")
        return importlib.import_module(f"quadfast.{_MODULES[isa]}")
    for v in supported():
        try:
            return importlib.import_module(f"quadfast.{_MODULES[v]}")
        except ImportError:
            continue
    raise ImportError("no quadfast extension module could be imported")


core = load()
