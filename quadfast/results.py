"""Self-describing result files.

A result is one ``.npz`` file: its arrays, plus a JSON document under the key
``__meta__`` holding the configuration, seed, package version, machine and timings.
Files are written to a temporary name and renamed into place, so an interrupted write
never leaves a truncated result behind and never clobbers an earlier one.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "quadfast-result/1"


class Result(dict):
    """The arrays of a result file (a dict of name -> ndarray) with ``.meta`` (a dict)."""

    meta: dict

    def __repr__(self) -> str:
        kind = self.meta.get("kind", "?")
        return f"Result(kind={kind!r}, arrays={sorted(self)}, created={self.meta.get('created')!r})"


def machine_info() -> dict:
    """Processor, cores, platform and library versions (for the meta block)."""
    from . import __version__
    from ._ext import available, core as _core

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__, "quadfast": __version__,
        "extension": _core.variant, "extensions_available": available(), "sampler_isa": _core.sampler_isa(),
    }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_result(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` and ``meta`` to ``path`` (``.npz``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    full_meta = {"format": FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    full_meta.update(meta)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if "__meta__" in payload:
        raise ValueError("arrays: the name '__meta__' is reserved")
    payload["__meta__"] = np.array(json.dumps(_jsonable(full_meta), indent=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **payload)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_result(path) -> Result:
    """Load a result written by :func:`save_result`."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        if "__meta__" not in data:
            raise ValueError(f"path: {path} is not a quadfast result file (no __meta__ entry)")
        res = Result({k: data[k] for k in data.files if k != "__meta__"})
        res.meta = json.loads(str(data["__meta__"]))
    if res.meta.get("format") != FORMAT:
        raise ValueError(f"path: unsupported result format {res.meta.get('format')!r} in {path}")
    return res
