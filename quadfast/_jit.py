"""The one decorator factory through which every Numba kernel of quadfast is compiled.

Keeping the options in one place means that every kernel is cached on disk, uses
NumPy's floating-point error model (division by zero gives inf/nan as in NumPy, no
exception, and no hidden checks in the inner loops) and is compiled without
``fastmath``: the kernels are compared with their NumPy twins to ~1e-12, which
reassociation would break.
"""
from __future__ import annotations

import numba

__all__ = ["jit"]

_DEFAULTS = {"cache": True, "error_model": "numpy", "fastmath": False, "nogil": True}


def jit(signature_or_none=None, **kw):
    """Return a decorator that compiles a function with ``numba.njit``.

    Parameters
    ----------
    signature_or_none : str, numba signature, list of them, or None
        Explicit signature(s); with one, the kernel is compiled eagerly (or loaded
        from the on-disk cache) when the module is imported, and calling it with
        other dtypes or layouts raises ``TypeError`` instead of compiling silently.
        ``None`` compiles lazily on first call.
    **kw
        Overrides of the defaults ``cache=True, error_model="numpy",
        fastmath=False, nogil=True``.

    Examples
    --------
    >>> from quadfast._jit import jit
    >>> @jit("float64(float64[::1])")
    ... def total(x):
    ...     s = 0.0
    ...     for v in x:
    ...         s += v
    ...     return s
    """
    options = dict(_DEFAULTS)
    options.update(kw)
    if signature_or_none is None:
        return numba.njit(**options)
    return numba.njit(signature_or_none, **options)
