"""Input checks shared by the public API.  Every message names the parameter."""
from __future__ import annotations

import numbers

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def as_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected float64 or float32, got {dtype!r}") from exc
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype: expected float64 or float32, got {dt}")
    return dt


def positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        rng = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected an integer {rng}, got {v}")
    return v


def positive_float(value, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{name}: expected a finite number {'>= 0' if allow_zero else '> 0'}, got {v}")
    return v


def real_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    return v


def seed_int(value, name: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a non-negative integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < 0 or v >= 2**64:
        raise ValueError(f"{name}: expected an integer in [0, 2**64), got {v}")
    return v


def float_array(value, name: str, ndim: int, shape=None, dtype=None, finite: bool = True) -> np.ndarray:
    """Convert to a C-contiguous float array of `dtype` (float64 by default) and check it."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}") from exc
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise TypeError(f"{name}: expected a real floating-point array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if shape is not None:
        for axis, want in enumerate(shape):
            if want is not None and arr.shape[axis] != want:
                raise ValueError(f"{name}: expected shape {_fmt_shape(shape)}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype or np.float64)
    if finite and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: expected finite values, found {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return arr


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def check_orthonormal(W: np.ndarray, name: str, tol: float) -> float:
    """Return max|W^T W - I|; raise if it exceeds `tol`."""
    err = float(np.max(np.abs(W.T.astype(np.float64) @ W.astype(np.float64) - np.eye(W.shape[1]))))
    if not err <= tol:
        raise ValueError(f"{name}: expected orthonormal columns (max|W^T W - I| <= {tol:g}), got {err:.6g}")
    return err


CACHE_LINE = 64


def aligned_copy(a: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous copy of ``a`` in ``dtype`` whose data start on a 64-byte boundary.

    NumPy's large arrays start 16 bytes past a page boundary, so every row of W straddles
    cache lines differently from the kernel's 32/64-byte vectors; on the 2-core AMD EPYC VM
    an aligned W made a (16384, 1024) blocked step about 10% faster (3.30 against 3.61 ms).
    The result is an ordinary ndarray (a view of a slightly larger buffer)."""
    a = np.asarray(a)
    dt = np.dtype(dtype)
    nbytes = a.size * dt.itemsize
    buf = np.empty(nbytes + CACHE_LINE, dtype=np.uint8)
    off = (-buf.ctypes.data) % CACHE_LINE
    out = buf[off:off + nbytes].view(dt).reshape(a.shape)
    out[...] = a
    return out
