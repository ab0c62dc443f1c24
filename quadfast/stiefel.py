"""Online SGD of a quadratic student on the Stiefel manifold (MODEL.md §1-2).

Student ``f(x; W) = ||W^T x||^2 - N`` with ``W^T W = I_N`` (d x N), loss ``e^2 / 2`` with
``e = f(x; W) - y``.  One step with a batch of B samples X (rows) and labels y:

    U  = -(2 lr / B) (I - W W^T) X^T diag(e)            (Riemannian gradient step, d x B)
    W~ = W + U Z^T,   Z = W^T X^T                         (N x B)
    W+ = W~ (W~^T W~)^{-1/2}                              (polar retraction)

For any batch the default is the blocked exact engine of MODEL.md §3 (k steps per pass
over W, with matrix-matrix products), unless :func:`default_block` gives 1 (tiny problems,
or batches of at least the block's columns); ``block=1`` selects the sequential kernels:
for B = 1 the closed form of MODEL.md §2 in one streaming pass over W per step (pass 2 of
step t fused with pass 1 of step t+1), for B > 1 the rank-B form with B x B symmetric
eigendecompositions.  All equal
the polar retraction to rounding.  Time is ``t = lr * steps`` everywhere in quadfast.
MODEL.md is docs/MODEL.md in the repository.
"""
from __future__ import annotations

import dataclasses
import time as _time

import numpy as np

from . import _threads
from . import _validate as V
from .teacher import Teacher

__all__ = ["StiefelSGD", "Trajectory", "DivergenceError", "logspace_steps", "haar_stiefel", "default_block",
           "last_level_cache_bytes"]


def default_block(d: int, width: int, batch: int, dtype=np.float64, cache_bytes: int | None = None) -> int:
    """Steps per block of the blocked engine (MODEL.md §3), from d, the width N, the batch
    and the size of the last-level cache.

    A block holds ``c = block * batch`` sample columns, and the rule (``quadfast::
    default_block`` in ``csrc/include/quadfast/blocking.hpp``, which a C++ simulator can
    call too) is

    * ``d * N < 64``: 1, the sequential kernels ((16, 1): 0.32 us per step against 0.45);
    * ``N = 1``: ``c = 4`` (width 1 runs column operations instead of products);
    * ``2 <= N < 32``: ``c = max(16, N)``: at such widths a block's fixed costs (its
      small matrices, the set-up of its pass) are amortised over its c steps; 16 columns
      were the fastest or within 6% from width 2 to 12, and 4 columns 45-55% slower at
      widths 2 and 4 (sweeps below);
    * ``32 <= N <= 128``: from the cache.  If W and a block of samples, ``d (N + 32)``
      elements, fit in half the last-level cache: ``c = 16`` below width 64 and ``c = 24``
      from there (a block adds about ``3 d c`` flops per step to ``6 d N``); otherwise
      ``c = 32``, because W then streams from memory once per block (below);
    * ``N > 128``: ``c = 96``.  A block adds about ``3 d c`` flops per step to ``6 d N``
      and streams W once per ``c`` steps; between the two, 96 columns were the fastest or
      within 1% of it in all but one of the sweeps below;

    and ``block = max(1, c // batch)``.

    ``dtype`` is W's (float64 or float32: the bytes per element) and ``cache_bytes`` the
    cache size; ``None`` takes this machine's, :func:`quadfast.last_level_cache_bytes`
    (Linux's reading in ``/sys/devices/system/cpu/cpu0/cache``, else Eigen's cpuid query).
    The default block of widths 32 to 128, and with it the rounding of a run, therefore
    depends on the machine: pass ``block=`` (the simulators record theirs in
    ``sim.block``) or ``cache_bytes`` to reproduce a run bit for bit on another one.

    **Why the cache.**  A block's pass reads and writes W once, and from memory that pass
    costs more than from the cache: on the 2-core AMD EPYC VM of the README (Zen 5, 32 MiB
    L3), going from (4096, 64) to (65536, 64) the time per row of W and step grew from 5.2
    to 8.4 ns with 16 columns and from 5.0 to 6.5 ns with 32, about 50 ns per row and pass
    in both (16 x 3.2, 32 x 1.5), W's 512 bytes per row at about 10 GB/s, paid once per block,
    so short blocks pay it more often.  (NumPy's in-place add streams 58 GB/s, read and
    write, on that core: the pass does not overlap its memory traffic with its arithmetic;
    a software prefetch of the next row block was tried and did not help.)  In the cache
    the extra ``3 d c`` flops of longer blocks dominate, and fewer columns win.
    ``benchmarks/block_sweep.py`` there, one thread, float64, microseconds per step (minimum of 8-10 interleaved rounds; bold: the rule's choice
    with its 32 MiB), 16 / 24 / 32 / 48 columns, in the cache: (4096, 32) **12.6** / 13.1
    / 13.9 / 16.1; (4096, 48) **16.3** / 16.3 / 17.2 / 18.5; (16384, 48) **66** / 75 /
    75.3 / 91.3; (2048, 64) 12.4 / **11.3** / 11.9 / 12.7; (4096, 64) 21.3 / **19.6** /
    20.6 / 23.1; (16384, 64) 90 / **85.5** / 93 / 93.6; (4096, 96) 30.3 / **27.3** / 28.8 /
    29.2; (4096, 128) 39.5 / **34.7** / 36.8 / 38.1.  Beyond it: (32768, 64) (W 16 MiB, W and
    samples 24 MiB) 264 / 267 / **219** / 232; (65536, 64) 552 / 553 / **426** / 453;
    (131072, 64) 1140 / 1083 / **850** / 909; (262144, 64) 2368 / 2228 / **1709** / 1904;
    (262144, 32) 1388 / 1346 / **1210** / 1358; (131072, 128) 2119 / 1681 / **1392** /
    1404.  Two threads: (4096, 64) 11.3 / **10.4** / 11.0 / 11.9, (65536, 64) 313 / 293 /
    **222** / 238.  The Euclidean student, which takes this rule up to width 128: (4096,
    64) 17.8 / **14.6** / 15.0 / 14.8, (65536, 64) 371 / 335 / **336** / 320.  On the
    Ice Lake VM below, whose memory delivers more bytes per flop, the same choice was
    within 2% of the best at (4096, 64) (24 columns there: 42 against 43 us); the rule
    before this one took 32 columns at every d.

    Measured with ``benchmarks/block_sweep.py`` on the 2-core Ice Lake VM of the README,
    one thread, microseconds per step (minimum over 10 interleaved rounds of about 0.3 s
    each, nothing recorded; bold: the rule's choice), float64 unless stated: (16384, 1024)
    with 64 / 96 / 128 / 192 columns: 1974 / **1867** / 1879 / 1932 (repeats: 2323 /
    **2283** / 2339 / 2464 and 1935 / **1841** / 1845 / 1896); float32: 1081 / **1033** / 1035 /
    1137; (4096, 1024): 568 / **548** / 628 / 732 (float32: 338 / 357 / 347 / 399, the one
    case where 64 columns won); (8192, 512): 602 / **548** / 607 /
    705; (16384, 2048) 40 / 64 / 80 / 96: 4201 / 3787 / 3697 / **3635**; (16384, 256) 48 /
    64 / 96 / 128: 608 / 613 / **597** / 644; (16384, 192) 32 / 48 / 64 / 96 / 128: 592 /
    553 / 553 / **542** / 537.  At (8192, 4096), 32 / 64 / 96 gave 6277 / 7334 / 6571 and
    7818 / 6863 / 5941 in two runs: within the VM's noise.  The previous rule (128 or 192
    columns above N = 128) was tuned before the AVX-512 micro-kernel.  At N <= 128, with
    the products of rowgemm.hpp: (4096, 64) 16 / 24 / 32 / 48 / 64 columns: 44 / **42** /
    43 / 50 / 55; (16384, 128) 32 / 64 / 128: 331 / 349 / 419 (the rule takes 24 there,
    not measured).  Small problems are
    blocked too: sequential kernel against blocks of 4 / 8 / 16 columns, (256, 1): 3.6
    against 1.3 / 1.4 / 1.4; (1024, 1): 16.0 against 3.7 / 3.8 / 4.4; (1024, 4): 13.6
    against 8.8 / 6.5 / 6.2.

    The same sweeps on a second machine, a 2-core Emerald Rapids VM (Intel family 6,
    model 207; L1d 48 KiB and L2 2 MiB per core, L3 300 MiB), 10 rounds of 0.2-0.3 s:
    (16384, 1024) 64 / 96 / 128 / 192: 1906 / **1824** / 1813 / 1932; (16384, 2048) 48 / 64
    / 96 / 128: 5959 / 5898 / **4728** / 5412; (8192, 4096) 32 / 64 / 96: 6631 / 6914 /
    **5754**; (4096, 1024) 64 / 96 / 128: 531 / **509** / 526.  Small widths there, 4 / 8 /
    16 / 32 columns: (16384, 1): **38.7** / 42.5 / 56.7; (4096, 1): **9.65** / 10.6 / 13.7;
    (16384, 2): 114 / 77.6 / **74.7** / 79.6; (16384, 4): 123 / 82.7 / **79.6** / 83.1;
    (65536, 4): 480 / 326 / **314**; (1024, 4): 7.58 / 5.29 / **5.16**; (16384, 8) 8 / 16 /
    32: 70.8 / **74.7** / 82.1; (16384, 12) 12 / 16 / 24: 98 / **85.5** / 90.  The rule
    before this one took ``c = max(4, N)`` below width 32: 45-55% slower at widths 2 and 4.

    Above width 128 the optimum did not move with the cache: on the Ice Lake VM (L2
    1.25 MiB, L3 48 MiB) (4096, 1024) (W 32 MiB, in L3) and (16384, 1024) (128 MiB) have
    the same optimum.  A rule that keeps an N x c panel in L2 (80
    columns at N = 2048, 32 at N = 4096 here) was tried and measured no better.  On the
    Emerald Rapids VM, with an L2 1.6 times as large and an L3 six times as large, the
    optima above width 128 were the same 96-128 columns; the panel rule would have taken
    256 at N = 1024 there, and 192 was already 6% slower than 96.  There, with W in its
    L2, at (2048, 64), 16 / 32 / 64 columns gave 20.1 / 19.6 / 22.9 us per step (the rule
    takes 24 there, not measured), and
    with W (512 MiB) beyond its L3, at (1048576, 64), 16.4 / **12.9** / 13.9 ms; at
    (65536, 1024) (W 512 MiB), 64 / 96 / 128: 7299 / **7325** / 7259 us, flat.  The cache sizes do enter
    the products inside a block: the packed products (above width 128 in AVX-512 builds)
    take their panels (kc, mc, nc) from Eigen's blocking for the caches it detects.
    """
    from ._ext import core as _core

    d = V.positive_int(d, "d")
    width = V.positive_int(width, "width")
    batch = V.positive_int(batch, "batch")
    return int(_core.default_block(d, width, batch, *_cache_args(dtype, cache_bytes)))


def _cache_args(dtype, cache_bytes):
    """(bytes per element, cache size or -1 for this machine's) for the C++ block rules."""
    cache = -1 if cache_bytes is None else V.positive_int(cache_bytes, "cache_bytes", minimum=0)
    return V.as_dtype(dtype).itemsize, cache


def last_level_cache_bytes() -> int:
    """The size in bytes of this machine's last-level cache, as :func:`default_block` uses
    it: on Linux the highest data-holding level in ``/sys/devices/system/cpu/cpu0/cache``,
    elsewhere Eigen's cpuid query (``quadfast::last_level_cache_bytes``; 0 if unknown)."""
    from ._ext import core as _core

    return int(_core.last_level_cache_bytes())


_DEFAULT_TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
# shortest chunk of run() in blocks: a chunk boundary costs the blocked engine one extra
# P = W^T X of a block (2 d N c flops against about 6.5 d N c for the block itself)
_MIN_CHUNK_BLOCKS = 8

# accepted deviation of a user's W0 from orthonormality (it is then polished to rounding)
_W0_TOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-4}


class DivergenceError(FloatingPointError):
    """A step produced non-finite values.  ``step`` is the 1-based number of that step;
    the simulator's weights are those after step ``step - 1``."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def logspace_steps(steps: int, num: int, include_zero: bool = True) -> np.ndarray:
    """About ``num`` distinct step counts spaced geometrically in [1, steps] (plus 0).

    Always contains ``steps``; duplicates from rounding at small counts are removed.
    """
    steps = V.positive_int(steps, "steps")
    num = V.positive_int(num, "num")
    # geomspace(1, steps, 1) is [1]: steps is added explicitly
    pts = np.union1d(np.round(np.geomspace(1, steps, num)).astype(np.int64), [steps])
    if include_zero:
        pts = np.concatenate([[0], pts])
    return pts


def haar_stiefel(d: int, width: int, seed: int = 0) -> np.ndarray:
    """A Haar-distributed point of the Stiefel manifold (d x width, float64).

    Q from the QR decomposition of a d x width standard Gaussian matrix, with column signs
    fixed so that diag(R) > 0 (this makes the law exactly Haar).  The Gaussian comes from
    NumPy's PCG64 seeded with SeedSequence((seed, 0x5EED)), independent of the sample stream.
    """
    d = V.positive_int(d, "d")
    width = V.positive_int(width, "width", maximum=d)
    rng = np.random.default_rng(np.random.SeedSequence((V.seed_int(seed), 0x5EED)))
    q, r = np.linalg.qr(rng.standard_normal((d, width)))
    s = np.sign(np.diag(r))
    s[s == 0] = 1.0
    return np.ascontiguousarray(q * s)


@dataclasses.dataclass
class Trajectory:
    """Recorded statistics of a run.

    steps : SGD steps completed at each record (counted from the simulator's start)
    time : lr * steps
    risk : StiefelSGD: R = 1 - tr((G Lambda)^2) / tr(Lambda^2)   (MODEL.md §1);
        EuclideanSGD: R = ||W W^T - M*||_F^2 / ||M*||_F^2 (see quadfast.euclid)
    alignment : StiefelSGD: A_j = G_jj = ||W^T theta_j||^2;
        EuclideanSGD: A_j = G_jj / lambda_j; shape (n_records, r)
    orth_error : max|W^T W - I| at each record (StiefelSGD); NaN for EuclideanSGD,
        whose weights are unconstrained
    """

    steps: np.ndarray
    time: np.ndarray
    risk: np.ndarray
    alignment: np.ndarray
    orth_error: np.ndarray

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __len__(self) -> int:
        return len(self.steps)


def _record_points(record, steps: int) -> np.ndarray:
    if record is None:
        return np.array([steps], dtype=np.int64)
    rec = np.asarray(record)
    if rec.ndim != 1 or rec.size == 0 or rec.dtype.kind not in "iu":
        raise ValueError("record: expected a non-empty 1-D array of integer step counts")
    rec = rec.astype(np.int64)
    if rec.min() < 0 or rec.max() > steps:
        raise ValueError(f"record: expected step counts in [0, steps={steps}], got [{rec.min()}, {rec.max()}]")
    if np.any(np.diff(rec) <= 0):
        raise ValueError("record: expected strictly increasing step counts")
    return rec


class _OnlineSGD:
    """Stepping and recording shared by the online-SGD simulators (StiefelSGD,
    EuclideanSGD).  A subclass sets ``teacher``, ``width``, ``lr``, ``batch``, ``block``,
    ``dtype``, ``W`` and ``_kernel`` (whose ``advance(W, steps, X, y)`` returns
    ``(steps_done, finite)``), and defines ``steps_done`` and ``_stats()``, which returns
    (steps, risk, alignment, orth_error)."""

    _divergence_hint = "non-finite values"

    def projection(self) -> np.ndarray:
        """U = Theta^T W (r x N), float64."""
        return self.teacher.project(self.W)

    def overlap(self) -> np.ndarray:
        """G = Theta^T W W^T Theta (r x r); for the Euclidean student G -> Lambda as it learns."""
        U = self.projection()
        return U @ U.T

    @property
    def threads(self) -> int:
        """Threads of the blocked engine; settable (results do not depend on it)."""
        return self._threads

    @threads.setter
    def threads(self, value) -> None:
        n = _threads.resolve(value)
        self._kernel.set_threads(n)
        self._threads = n

    @property
    def split_period(self) -> int:
        """Steps at whose absolute multiples a run can be split (into ``run`` or ``step``
        calls, at record points, or by a pickle) without changing its bits.

        The block for the sequential kernel (1) and the blocked engines.  Where the Stiefel
        engine keeps W in the factored form W = What (I + D) between its passes (float64,
        widths 2..128, d >= 16 N, block > 1; wider ones on request), it is the formation
        period, the block times ceil(16 N / block): W is formed at these multiples and at
        the end of every call.
        Splits elsewhere change the trajectory by rounding only.
        """
        return int(getattr(self._kernel, "formation_period", self.block))

    def _advance(self, steps: int, X=None, y=None) -> None:
        if self.W.dtype != self.dtype or not self.W.flags.c_contiguous or self.W.shape != (self.teacher.d, self.width):
            raise ValueError("W: the weights were replaced by an array of another shape, dtype or layout; "
                             "assign into sim.W[...] instead")
        before = self.steps_done
        done, finite = self._kernel.advance(self.W, int(steps), X, y)
        if not finite:
            bad = before + done + 1
            raise DivergenceError(
                f"SGD step {bad} produced {self._divergence_hint}; "
                f"sim.W holds the last finite weights, those after step {bad - 1}", step=bad)

    # ----------------------------------------------------------------- public stepping
    def step(self, X, y=None) -> None:
        """One SGD step per ``batch`` rows of X (rows are samples).

        Labels come from the teacher (with its noise, drawn from the sample stream) unless
        ``y`` is given.  X must have a multiple of ``batch`` rows.
        """
        X = V.float_array(X, "X", 2, shape=(None, self.teacher.d), dtype=self.dtype)
        n = X.shape[0]
        if n == 0 or n % self.batch:
            raise ValueError(f"X: expected a positive multiple of batch={self.batch} rows, got {n}")
        if y is not None:
            y = V.float_array(y, "y", 1, shape=(n,), dtype=self.dtype)
        self._advance(n // self.batch, X, y)

    def run(self, steps: int, record=None, progress: bool = False, chunk_seconds: float = 0.25) -> Trajectory:
        """Run ``steps`` SGD steps with samples drawn in the kernel.

        Parameters
        ----------
        steps : int
        record : array of int, optional
            Step counts *within this call* (0 = now, ``steps`` = end) at which to record the
            statistics of :class:`Trajectory`; default: only the end.  The call always
            runs all ``steps``, also past the last record point.  An empty sequence
            records nothing and returns an empty Trajectory: a record point measures the
            exact ``max|W^T W - I|`` (O(d N^2), about 170 steps' worth of work at N = 1024),
            which a caller that times the steps alone, or computes its own statistics,
            can skip.
        progress : bool
            Show a progress bar (tqdm).
        chunk_seconds : float
            The kernel runs in chunks of about this length (and of at least 8 blocks)
            between which Python handles progress and Ctrl-C.  Chunks end on multiples
            of ``split_period`` (the block, or the formation period of the Stiefel
            engine's factored form), so they never change the result.  A record point
            off these multiples (or a ``run``/``step`` call that ends there) ends a block
            early or forms W early: the trajectory is then the same to rounding but not
            bit for bit as with other record points.  The same record points give the
            same bits.

        Returns
        -------
        Trajectory
            If interrupted (KeyboardInterrupt), the statistics recorded so far are kept in
            ``sim.last_trajectory`` before the exception propagates; the simulator stays
            consistent and can continue.
        """
        steps = V.positive_int(steps, "steps", minimum=0)
        empty = record is not None and np.size(record) == 0 and np.ndim(record) == 1
        rec = np.empty(0, dtype=np.int64) if empty else _record_points(record, steps)
        # (target, record there?): the record points, then the end of the call
        marks = [(int(t), True) for t in rec] + ([] if rec.size and rec[-1] == steps else [(steps, False)])
        start = self.steps_done
        rows: list[tuple] = []
        self.last_trajectory = None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, unit="step", unit_scale=True, desc=type(self).__name__, leave=True)
        per_step = None
        align = self.split_period
        try:
            for target, recorded in marks:
                while self.steps_done - start < target:
                    remaining = int(target - (self.steps_done - start))
                    n = remaining if per_step is None else max(1, min(remaining, int(chunk_seconds / per_step)))
                    n = min(n, 64 * self.block) if per_step is None else n
                    # each chunk boundary costs the blocked engine one extra product W^T X
                    # of a block (a third of a block's work): chunks of at least 8 blocks
                    n = max(n, min(remaining, _MIN_CHUNK_BLOCKS * self.block))
                    if n < remaining and align > 1:
                        # end progress chunks on absolute multiples of the block (of the
                        # formation period where the Stiefel engine keeps W factored):
                        # then chunking never changes the trajectory
                        end = (self.steps_done + n) // align * align
                        n = max(end - self.steps_done, min(remaining, align - self.steps_done % align))
                    t0 = _time.perf_counter()
                    self._advance(n)
                    dt = _time.perf_counter() - t0
                    per_step = max(dt / n, 1e-9)
                    if bar is not None:
                        bar.update(n)
                if recorded:
                    rows.append(self._stats())
                    self.last_trajectory = _traj(rows, self.lr, self.teacher.r)
            self.last_trajectory = _traj(rows, self.lr, self.teacher.r)
        finally:
            if bar is not None:
                bar.close()
        return self.last_trajectory

    @property
    def time(self) -> float:
        """t = lr * steps_done."""
        return self.lr * self.steps_done


class StiefelSGD(_OnlineSGD):
    """Online SGD on the Stiefel manifold with the exact polar retraction.

    Parameters
    ----------
    teacher : Teacher
    width : int
        N, the number of student neurons, 1 <= N <= d.
    lr : float
        Step size eta > 0 (time t = eta * steps).
    batch : int
        Samples per step B.
    seed : int
        Fixes the start (when ``W0`` is None) and every sample: sample s of the run is
        stream s of quadfast's counter-based Gaussian generator.  A run is bit-identical
        when repeated or resumed from a pickle; split into ``run`` calls (or recorded) at
        multiples of ``block`` it is bit-identical too, at other points equal to rounding.
    W0 : array_like (d, width), optional
        Starting weights with orthonormal columns; default Haar-random (:func:`haar_stiefel`).
        A ``W0`` within 1e-6 (float64) / 1e-4 (float32) of orthonormal is accepted and
        polished by one polar re-orthonormalisation.
    dtype : float64 or float32
        Precision of the weights, samples and kernel arithmetic (B x B algebra is float64).
    reortho_tol : float, optional
        Target for max|W^T W - I| (default 1e-12 for float64, 1e-5 for float32).
    reortho_max_interval : int
        Most steps between two full polar re-orthonormalisations W <- W (W^T W)^{-1/2}
        (N x N symmetric eigendecomposition).  Corrections are otherwise triggered by the
        drift control of README "Re-orthonormalisation": a per-step bound on the growth of
        W^T W - I, cheap O(dN) probes when the bound nears tol, and a full correction when a
        probe exceeds tol / 8.
    reortho : bool
        False disables re-orthonormalisation (for studying the drift only).
    block : int, optional
        Steps per block of the blocked exact engine (MODEL.md §3, any batch): k steps are
        carried out with matrix-matrix products and one pass over W, reproducing the
        sequential trajectory to rounding.  ``block=1`` selects the sequential kernels
        (the one-pass fused kernel for batch 1, the rank-B kernel otherwise).
        Default: :func:`default_block` for (d, width, batch, dtype) and this machine's
        last-level cache, chosen at construction and kept by checkpoints.
    threads : int, optional
        Threads of the blocked engine (sampling and the passes over W).  Default: the
        environment (``QUADFAST_NUM_THREADS``, then ``OMP_NUM_THREADS``), else the CPUs
        available.  Results are bit-identical for every thread count: rows are split into
        slabs fixed by the problem size, whose partial sums are added in a fixed order.
        The sequential kernels (``block=1``) use one thread.

    Attributes
    ----------
    W : numpy.ndarray (d, width)
        The weights.  The kernel updates this very array in place.
    steps_done : int
        SGD steps taken so far.
    """

    def __init__(self, teacher: Teacher, width: int, lr: float, batch: int = 1, seed: int = 0, W0=None,
                 dtype=np.float64, reortho_tol: float | None = None, reortho_max_interval: int = 1 << 22,
                 reortho: bool = True, block: int | None = None, threads: int | None = None):
        if not isinstance(teacher, Teacher):
            raise TypeError(f"teacher: expected a quadfast.Teacher, got {type(teacher).__name__}")
        self.teacher = teacher
        d = teacher.d
        self.width = V.positive_int(width, "width", maximum=d)
        self.lr = V.positive_float(lr, "lr")
        self.batch = V.positive_int(batch, "batch")
        self.seed = V.seed_int(seed)
        self.dtype = V.as_dtype(dtype)
        self.reortho_tol = _DEFAULT_TOL[self.dtype] if reortho_tol is None else V.positive_float(reortho_tol, "reortho_tol")
        self.reortho_max_interval = V.positive_int(reortho_max_interval, "reortho_max_interval")
        self.reortho = bool(reortho)
        if block is None:
            block = default_block(d, self.width, self.batch, self.dtype)
        self.block = V.positive_int(block, "block")
        self._threads = _threads.resolve(threads)
        if W0 is None:
            W = haar_stiefel(d, self.width, self.seed).astype(self.dtype)
        else:
            W = V.float_array(W0, "W0", 2, shape=(d, self.width), dtype=self.dtype)
            V.check_orthonormal(W, "W0", _W0_TOL[self.dtype])
        self.W = V.aligned_copy(W, self.dtype)  # the simulator owns its weights
        self._kernel = self._make_kernel()
        if V.check_orthonormal(self.W, "W0", np.inf) > self.reortho_tol / 100:
            self._kernel.reorthonormalize(self.W)
        self._kernel.set_state((0, 0, 0, 0, 0.0, 0.0, self._kernel.get_state()[6], 0.0))

    # ----------------------------------------------------------------- kernel plumbing
    def _make_kernel(self):
        from ._ext import core as _core

        cls = _core.StiefelKernel64 if self.dtype == np.float64 else _core.StiefelKernel32
        t = self.teacher
        self._coef = np.ascontiguousarray(t.coef, dtype=self.dtype)
        self._dirs = None if t.directions is None else np.ascontiguousarray(t.directions, dtype=self.dtype)
        return cls(t.d, self.width, self.batch, self.lr, self._coef, self._dirs, t.noise, self.seed,
                   self.reortho_tol, self.reortho_max_interval, self.reortho, self.block, self._threads)

    # ----------------------------------------------------------------- observables
    @property
    def steps_done(self) -> int:
        return int(self._kernel.get_state()[0])

    _divergence_hint = "non-finite values (error or retraction overflowed)"

    @property
    def reortho_stats(self) -> dict:
        """Re-orthonormalisation bookkeeping: full corrections (`count`), O(dN) probes,
        steps since the last correction, and the largest max|W^T W - I| measured before a
        correction (`max_drift`, the worst drift the run has had at a correction)."""
        t, since, n, probes, mx, last, est, logb = self._kernel.get_state()
        return {"count": int(n), "probes": int(probes), "steps_since": int(since),
                "max_drift": float(mx), "last_drift": float(last), "estimate": float(est)}

    def alignment(self) -> np.ndarray:
        """A_j = G_jj = ||W^T theta_j||^2 (length r)."""
        U = self.projection()
        return np.einsum("ij,ij->i", U, U)

    def risk(self) -> float:
        """R(W) = 1 - tr((G Lambda)^2) / tr(Lambda^2)  (MODEL.md §1), in O(r N^2)."""
        return self.teacher.risk_of_overlap(self.projection())

    def orth_error(self) -> float:
        """max|W^T W - I|, with W^T W accumulated in float64 over blocks of rows (no
        temporary of the size of W)."""
        if self.W.dtype != self.dtype or not self.W.flags.c_contiguous or self.W.shape != (self.teacher.d, self.width):
            W = self.W.astype(np.float64, copy=False)
            return float(np.max(np.abs(W.T @ W - np.eye(self.width))))
        return float(self._kernel.measure_drift(self.W))

    def _stats(self):
        U = self.projection()
        return (self.steps_done, self.teacher.risk_of_overlap(U), np.einsum("ij,ij->i", U, U), self.orth_error())

    # ----------------------------------------------------------------- checkpoints
    def __getstate__(self):
        return {
            "version": 1,
            "teacher": self.teacher, "width": self.width, "lr": self.lr, "batch": self.batch,
            "seed": self.seed, "dtype": self.dtype.str, "reortho_tol": self.reortho_tol,
            "reortho_max_interval": self.reortho_max_interval, "reortho": self.reortho, "block": self.block,
            "threads": self._threads, "W": self.W,
            "kernel_state": self._kernel.get_state(),
        }

    def __setstate__(self, st):
        if st.get("version") != 1:
            raise ValueError(f"checkpoint: unsupported StiefelSGD state version {st.get('version')!r}")
        self.teacher = st["teacher"]
        self.width, self.lr, self.batch, self.seed = st["width"], st["lr"], st["batch"], st["seed"]
        self.dtype = np.dtype(st["dtype"])
        self.reortho_tol, self.reortho_max_interval = st["reortho_tol"], st["reortho_max_interval"]
        self.reortho = st["reortho"]
        self.block = st["block"]
        self._threads = st.get("threads", 1)
        self.W = V.aligned_copy(st["W"], self.dtype)
        self._kernel = self._make_kernel()
        self._kernel.set_state(tuple(st["kernel_state"]))

    def __repr__(self) -> str:
        return (f"StiefelSGD(d={self.teacher.d}, width={self.width}, r={self.teacher.r}, lr={self.lr:g}, "
                f"batch={self.batch}, block={self.block}, threads={self._threads}, dtype={self.dtype}, steps_done={self.steps_done})")


def _traj(rows, lr, r=None) -> Trajectory:
    """Trajectory from (steps, risk, alignment, orth_error) rows; no rows: an empty one
    whose alignment has shape (0, r)."""
    steps = np.array([row[0] for row in rows], dtype=np.int64)
    alignment = np.array([row[2] for row in rows]) if rows else np.empty((0, r))
    return Trajectory(steps=steps, time=lr * steps.astype(np.float64), risk=np.array([row[1] for row in rows], dtype=float),
                      alignment=alignment, orth_error=np.array([row[3] for row in rows], dtype=float))
