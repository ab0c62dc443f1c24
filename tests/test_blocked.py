"""The blocked exact engine (MODEL.md §3) against the sequential kernel and the reference."""
import pathlib
import pickle
import sys

import numpy as np
import pytest

import quadfast as qf
from quadfast import reference as ref


def explicit(base, seed=5):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((base.d, base.r)))
    return qf.Teacher(base.coef, directions=q, noise=base.noise)


@pytest.mark.parametrize("block", [2, 7, 32, 100])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_blocked_equals_sequential(block, frame):
    """Same samples, same start: blocked and sequential trajectories agree to 1e-12."""
    teacher = qf.Teacher.power_law(160, 0.5, 1.0, noise=0.2)
    if frame == "explicit":
        teacher = explicit(teacher)
    kw = dict(width=12, lr=0.02 / 160, seed=4)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    blk = qf.StiefelSGD(teacher, block=block, **kw)
    seq.run(600)
    blk.run(600)
    np.testing.assert_allclose(blk.W, seq.W, rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch,block,frame,dtype", [(1, 4, "canonical", np.float64), (1, 7, "explicit", np.float64),
                                                   (3, 4, "canonical", np.float64), (1, 4, "canonical", np.float32)])
def test_width_one_blocked_equals_sequential(batch, block, frame, dtype):
    """Width 1 has its own column-operation path in the blocked pass over W: against the
    sequential kernel to 1e-12 (float32: 1e-5) on the same samples, over 10 row slabs with a
    partial last row block (d = 3000), bit-identical with 1 and 2 threads, and W moves."""
    d = 3000
    teacher = qf.Teacher.power_law(d, 0.3, 1.0, noise=0.1)
    if frame == "explicit":
        teacher = explicit(teacher)
    kw = dict(width=1, lr=0.5 / d, batch=batch, seed=2)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    W0 = seq.W.copy()
    sims = [qf.StiefelSGD(teacher, block=block, dtype=dtype, threads=t, **kw) for t in (1, 2)]
    for sim in [seq] + sims:
        sim.run(400)
    np.testing.assert_allclose(sims[0].W, seq.W, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-5)
    assert np.array_equal(sims[0].W, sims[1].W)
    assert np.max(np.abs(seq.W - W0)) > 1e-2


@pytest.mark.parametrize("width", [2, 3, 7, 30, 60, 100, 128, 129])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_widths_blocked_equals_sequential(width, dtype):
    """Widths 2..128 take the pass's direct products in AVX-512 builds (rowgemm.hpp; tails
    of 1 to 4 vectors at these widths), 129 the packed ones: against the sequential kernel
    on the same samples to 1e-12 (float32: 2e-5), over several slabs with a partial last
    row block (d = 1500), bit-identical on 1 and 2 threads, and W moves."""
    d = 1500
    teacher = qf.Teacher.power_law(d, 0.5, 1.0, noise=0.1)
    kw = dict(width=width, lr=0.2 / d, seed=3)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    W0 = seq.W.copy()
    sims = [qf.StiefelSGD(teacher, block=13, dtype=dtype, threads=t, **kw) for t in (1, 2)]
    for sim in [seq] + sims:
        sim.run(260)
    np.testing.assert_allclose(sims[0].W, seq.W, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-5)
    assert np.array_equal(sims[0].W, sims[1].W)
    assert np.max(np.abs(seq.W - W0)) > 1e-3


@pytest.mark.parametrize("width", [2, 7, 60, 129])
def test_small_widths_euclid_blocked_equals_sequential(width):
    """The Euclidean engine's direct products at the same widths: against its sequential
    kernel to 1e-12, bit-identical on 1 and 2 threads."""
    d = 1500
    teacher = qf.Teacher.power_law(d, 0.5, 1.0, noise=0.1)
    kw = dict(width=width, lr=0.2 / d, seed=3)
    seq = qf.EuclideanSGD(teacher, block=1, **kw)
    W0 = seq.W.copy()
    sims = [qf.EuclideanSGD(teacher, block=13, threads=t, **kw) for t in (1, 2)]
    for sim in [seq] + sims:
        sim.run(260)
    np.testing.assert_allclose(sims[0].W, seq.W, rtol=0, atol=1e-12)
    assert np.array_equal(sims[0].W, sims[1].W)
    assert np.max(np.abs(seq.W - W0)) > 1e-6


def test_blocked_on_caller_samples_equals_reference():
    teacher = qf.Teacher.power_law(96, 0.4, 1.0, noise=0.05)
    sim = qf.StiefelSGD(teacher, 6, lr=0.02 / 96, seed=7, block=16)
    W0 = sim.W.copy()
    X, y = teacher.sample(250, seed=7)
    sim.step(X, y)
    np.testing.assert_allclose(sim.W, ref.stiefel_sgd(W0, X, y, 0.02 / 96), rtol=0, atol=1e-10)


def test_blocked_float32():
    teacher = qf.Teacher.power_law(128, 0.5, 1.0)
    f64 = qf.StiefelSGD(teacher, 8, lr=0.02 / 128, seed=1, block=1)
    f32 = qf.StiefelSGD(teacher, 8, lr=0.02 / 128, seed=1, block=16, dtype=np.float32)
    f64.run(400)
    f32.run(400)
    np.testing.assert_allclose(f32.W, f64.W, rtol=0, atol=1e-4)


@pytest.mark.parametrize("width", [8, 9])
def test_blocked_is_bit_identical_across_block_aligned_chunks_and_pickles(width):
    """Calls ending on multiples of the formation period (the block, or 16 N rounded up
    to blocks where W is kept factored: width 8 at d = 128) keep the bits of one call;
    record points elsewhere on block boundaries change W by rounding only."""
    teacher = qf.Teacher.power_law(128, 0.5, 1.0, noise=0.1)
    kw = dict(width=width, lr=0.05 / 128, seed=42, block=16)
    a = qf.StiefelSGD(teacher, **kw)
    period = a._kernel.formation_period
    assert period == (128 if width == 8 else 16)
    a.run(3200, record=[0, period, 10 * period, 3200])
    b = qf.StiefelSGD(teacher, **kw)
    b.run(3200, chunk_seconds=1e-6)  # many small progress chunks
    assert np.array_equal(a.W, b.W)
    e = qf.StiefelSGD(teacher, **kw)
    e.run(3200, record=[0, 160, 1616, 3200])
    np.testing.assert_allclose(e.W, a.W, rtol=0, atol=1e-13)
    assert width == 9 or not np.array_equal(e.W, a.W)
    # a pickle taken mid-block continues exactly as the original does
    c = qf.StiefelSGD(teacher, **kw)
    c.run(1234)
    d = pickle.loads(pickle.dumps(c))
    c.run(1000)
    d.run(1000)
    assert np.array_equal(c.W, d.W)


def test_blocked_drift_control_and_divergence():
    d, N = 24, 4
    teacher = qf.Teacher.power_law(d, 0.45, 1.0)
    sim = qf.StiefelSGD(teacher, N, lr=0.05 / d, seed=0, block=8)
    sim.run(1_000_000)
    assert sim.reortho_stats["count"] > 0 and sim.reortho_stats["max_drift"] < 1e-12
    X, y = teacher.sample(40, seed=0)
    y[22] = 1e300
    s1 = qf.StiefelSGD(teacher, N, lr=1e-3, seed=1, block=8)
    s2 = qf.StiefelSGD(teacher, N, lr=1e-3, seed=1, block=8)
    s2.step(X[:22], y[:22])
    with pytest.raises(qf.DivergenceError, match="step 23"):
        s1.step(X, y)
    # the weights after step 22, to rounding: the failing block had 8 sample columns and
    # the comparison's last block 6, so their GEMMs sum in a different order
    assert s1.steps_done == 22
    np.testing.assert_allclose(s1.W, s2.W, rtol=0, atol=1e-13)


def test_block_argument_validation():
    teacher = qf.Teacher.power_law(64, 0.5, 1.0)
    with pytest.raises(ValueError, match="block"):
        qf.StiefelSGD(teacher, 4, lr=1e-3, block=0)
    with pytest.raises(ValueError, match="threads"):
        qf.StiefelSGD(teacher, 4, lr=1e-3, threads=0)
    with pytest.raises(TypeError, match="threads"):
        qf.StiefelSGD(teacher, 4, lr=1e-3, threads=1.5)
    sim = qf.StiefelSGD(teacher, 4, lr=1e-3, block=4)
    with pytest.raises(ValueError, match="threads"):
        sim.threads = -1
    assert qf.default_block(4096, 64, 1, cache_bytes=0) == 32 and qf.default_block(4096, 64, 4, cache_bytes=0) == 8
    assert qf.default_block(4096, 64, 64) == 1
    assert qf.default_block(16, 2, 1) == 1  # d N < 64: the sequential kernel
    assert qf.default_block(64, 64, 1, cache_bytes=1 << 20) == 24 and qf.default_block(1024, 1, 1) == 4
    with pytest.raises(ValueError, match="width"):
        qf.default_block(4096, 0, 1)
    with pytest.raises(TypeError, match="batch"):
        qf.default_block(4096, 64, 1.5)
    with pytest.raises(ValueError, match="cache_bytes"):
        qf.default_block(4096, 64, 1, cache_bytes=-1)
    with pytest.raises(TypeError, match="dtype"):
        qf.default_block(4096, 64, 1, dtype=np.int32)
    with pytest.raises(TypeError, match="cache_bytes"):
        qf.euclid.default_block(4096, 64, 1, cache_bytes=2.5)


def _cached(n):
    """Columns of the rule from width 32 to 128 when W and a block of samples fit in half
    the last-level cache."""
    return 16 if n < 64 else 24


def test_default_block_columns():
    """The rule of quadfast::default_block (blocking.hpp): c = block * batch columns, 4 at
    width 1, max(16, width) from 2 to 31, from 32 to 128 32 columns out of the cache and
    16 (below width 64) or 24 in it, 96 above, and c // batch steps for a batch (at least
    1); the Euclidean student's (batch 1 only) differs at width 1 (8 columns) and above
    width 128 (128 columns, 192 from width 512); the simulators take them when block is
    None."""
    for cache in (0, 1 << 40):  # unknown (the out-of-cache choice), and larger than any W here
        for n, c in [(1, 4), (2, 16), (4, 16), (15, 16), (16, 16), (17, 17), (31, 31), (32, 32), (63, 32),
                     (64, 32), (128, 32), (129, 96), (511, 96), (512, 96), (1024, 96), (4096, 96)]:
            if cache and 32 <= n <= 128:
                c = _cached(n)
            d = max(n, 64)
            assert qf.default_block(d, n, 1, cache_bytes=cache) == c, (n, cache)
            for batch in (2, 3, 4, 32, 200):
                assert qf.default_block(d, n, batch, cache_bytes=cache) == max(1, c // batch), (n, batch)
            assert qf.euclid.default_block(d, n, 2, cache_bytes=cache) == 1
            euclid_c = 8 if n == 1 else (c if n <= 128 else (128 if n < 512 else 192))
            assert qf.euclid.default_block(d, n, 1, cache_bytes=cache) == euclid_c, n
    assert qf.euclid.default_block(16, 2, 1) == 1 and qf.euclid.default_block(8, 8, 1) == 16  # d N = 32, 64
    assert qf.default_block(63, 1, 1) == 1 and qf.euclid.default_block(63, 1, 1) == 1
    teacher = qf.Teacher.power_law(2048, 0.5, 1.0)
    assert qf.StiefelSGD(teacher, 256, lr=1e-6, dtype=np.float32).block == 96
    assert qf.StiefelSGD(teacher, 256, lr=1e-6, batch=4).block == 24
    assert qf.EuclideanSGD(teacher, 256, lr=1e-6).block == 128
    # widths 32 to 128 take this machine's cache size, and the simulator's dtype
    for dtype in (np.float64, np.float32):
        assert qf.StiefelSGD(teacher, 64, lr=1e-6, dtype=dtype).block == qf.default_block(
            2048, 64, 1, dtype, qf.last_level_cache_bytes())
        assert qf.EuclideanSGD(teacher, 32, lr=1e-6, dtype=dtype).block == qf.euclid.default_block(
            2048, 32, 1, cache_bytes=qf.last_level_cache_bytes(), dtype=dtype)


@pytest.mark.parametrize("n", [32, 63, 64, 128])
def test_default_block_cache_threshold(n):
    """From width 32 to 128 the blocks are short (16 or 24 columns) exactly when
    2 d (N + 32) itemsize <= the cache size, and 32 columns otherwise: float32 halves the
    bytes; batch B takes c // B steps; None takes qf.last_level_cache_bytes()."""
    for d, itemsize, dtype in [(4096, 8, np.float64), (65536, 8, np.float64), (65536, 4, np.float32), (1000, 8, "float64")]:
        edge = 2 * d * (n + 32) * itemsize
        assert qf.default_block(d, n, 1, dtype, edge) == _cached(n)
        assert qf.default_block(d, n, 1, dtype, edge - 1) == 32
        assert qf.default_block(d, n, 4, dtype, edge) == _cached(n) // 4
        assert qf.default_block(d, n, 4, dtype, edge - 1) == 8
        assert qf.euclid.default_block(d, n, 1, dtype=dtype, cache_bytes=edge) == _cached(n)
        assert qf.euclid.default_block(d, n, 1, dtype=dtype, cache_bytes=edge - 1) == 32
        assert qf.default_block(d, n, 1, dtype) == qf.default_block(d, n, 1, dtype, qf.last_level_cache_bytes())


def _sysfs_last_level_cache():
    """The highest data-holding cache level of CPU 0 in Linux's sysfs, in bytes (None if absent)."""
    root = pathlib.Path("/sys/devices/system/cpu/cpu0/cache")
    best = (0, None)
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
        value = int(size.rstrip("KMG")) * scale
        if level > best[0] and value > 0:
            best = (level, value)
    return best[1]


def test_last_level_cache_bytes_reads_sysfs():
    """qf.last_level_cache_bytes() is the largest-level data cache that Linux lists in
    sysfs, read independently here; elsewhere it is a positive cpuid reading or 0."""
    got = qf.last_level_cache_bytes()
    expected = _sysfs_last_level_cache() if sys.platform.startswith("linux") else None
    if expected is None:
        assert got >= 0
    else:
        assert got == expected


@pytest.mark.parametrize("batch,block", [(2, 2), (3, 8), (5, 4), (16, 4)])
@pytest.mark.parametrize("frame", ["canonical", "explicit"])
def test_blocked_batch_equals_sequential_rank_b(batch, block, frame):
    """MODEL.md §3 for batch B: the blocked engine and the rank-B kernel agree to 1e-12."""
    teacher = qf.Teacher.power_law(150, 0.5, 1.0, noise=0.2)
    if frame == "explicit":
        teacher = explicit(teacher)
    kw = dict(width=10, lr=0.05 / 150, seed=11, batch=batch)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    blk = qf.StiefelSGD(teacher, block=block, **kw)
    seq.run(300)
    blk.run(300)
    assert blk.steps_done == 300
    np.testing.assert_allclose(blk.W, seq.W, rtol=0, atol=1e-12)


def test_blocked_batch_on_caller_samples_equals_reference():
    teacher = qf.Teacher.power_law(80, 0.5, 1.0, noise=0.1)
    sim = qf.StiefelSGD(teacher, 6, lr=0.1 / 80, batch=4, seed=2, block=5)
    W0 = sim.W.copy()
    X, y = teacher.sample(4 * 90, seed=2)
    sim.step(X, y)
    np.testing.assert_allclose(sim.W, ref.stiefel_sgd(W0, X, y, 0.1 / 80, 4), rtol=0, atol=1e-10)
    sim2 = qf.StiefelSGD(teacher, 6, lr=0.1 / 80, batch=4, seed=2, block=5)
    sim2.step(X)  # labels from the teacher, noise from the sample stream
    assert sim2.steps_done == 90 and np.isfinite(sim2.W).all()


@pytest.mark.parametrize("batch,frame", [(1, "canonical"), (1, "explicit"), (3, "canonical")])
def test_threads_give_bit_identical_results(batch, frame):
    """Rows are split into slabs fixed by (d, columns); partial sums are added in slab
    order: any thread count gives the same bits (here with corrections of the drift)."""
    teacher = qf.Teacher.power_law(1500, 0.5, 1.0, noise=0.1)
    if frame == "explicit":
        teacher = explicit(teacher)
    kw = dict(width=24, lr=0.3 / 1500, seed=9, batch=batch, block=max(1, 16 // batch), reortho_tol=1e-14)
    runs = []
    for threads in (1, 2, 3):
        sim = qf.StiefelSGD(teacher, threads=threads, **kw)
        sim.run(1200)
        runs.append(sim)
    assert runs[0].reortho_stats["probes"] > 0
    for other in runs[1:]:
        assert other.reortho_stats == runs[0].reortho_stats
        assert np.array_equal(other.W, runs[0].W)
    # and a thread count changed mid-run changes nothing either
    sim = qf.StiefelSGD(teacher, threads=1, **kw)
    cut = 2 * sim._kernel.formation_period  # a multiple of the block (16, or 5 at batch 3)
    assert cut < 1200
    sim.run(cut)
    sim.threads = 2
    sim.run(1200 - cut)
    assert np.array_equal(sim.W, runs[0].W)


@pytest.mark.parametrize("batch,block", [(1, 256), (2, 128)])
def test_per_step_work_in_row_parts(batch, block):
    """At width 256 the per-step O(N c) work runs in 4 row parts of 64, threaded (N c >= 2^16):
    the trajectory still equals the sequential kernel's to 1e-12, and 1 and 2 threads give
    the same bits."""
    teacher = qf.Teacher.power_law(1024, 0.8, 1.0, noise=0.1)
    kw = dict(width=256, lr=0.5 / 1024, seed=4, batch=batch)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    seq.run(300)
    runs = []
    for threads in (1, 2):
        sim = qf.StiefelSGD(teacher, block=block, threads=threads, **kw)
        sim.run(300)
        runs.append(sim)
    np.testing.assert_allclose(runs[0].W, seq.W, rtol=0, atol=1e-12)
    assert np.array_equal(runs[0].W, runs[1].W)


@pytest.mark.parametrize("cls", [qf.StiefelSGD, qf.EuclideanSGD])
def test_weights_start_on_a_cache_line(cls):
    """W is copied into 64-byte aligned memory (NumPy's large arrays start 16 bytes past a
    page), at construction, from a caller's W0 and after unpickling; it stays an ordinary
    C-contiguous array that the kernel updates in place."""
    import pickle

    teacher = qf.Teacher.power_law(4096, 0.5, 1.0)
    sim = cls(teacher, 64, lr=1e-3 / 4096, seed=1)
    W0 = sim.W.copy()
    for s in (sim, cls(teacher, 64, lr=1e-3 / 4096, seed=1, W0=W0), pickle.loads(pickle.dumps(sim))):
        assert s.W.ctypes.data % 64 == 0 and s.W.flags.c_contiguous and s.W.flags.writeable
        np.testing.assert_array_equal(s.W, W0)
    before = sim.W.ctypes.data
    sim.run(2 * sim.block)
    assert sim.W.ctypes.data == before and not np.array_equal(sim.W, W0)


def _factored_by_default(width):
    """The factored form is on by default outside the packed products: widths 2..128 with
    the AVX-512 extension's direct products, 2..31 elsewhere."""
    from quadfast import _ext

    return width < 32 or (width <= 128 and "avx512" in _ext.core.__name__)


@pytest.mark.parametrize("d,width,batch,frame", [(1100, 2, 1, "canonical"), (1100, 16, 1, "canonical"),
                                             (1100, 48, 1, "explicit"), (1100, 64, 2, "canonical"),
                                             (2400, 144, 1, "canonical")])
def test_factored_form_equals_sequential_and_unfactored(d, width, batch, frame):
    """At d >= 16 N (float64) the blocked engine keeps W = What (I + D) between its passes
    (stiefel.hpp, factor_block), over stretches of at least 2 N steps.  Against the
    sequential kernel to 1e-12 and against the same engine with the factored form off,
    over runs split into calls that end inside blocks, one of them too short for the
    form; bit-identical on 1 and 2 threads; W moves.  Width 144 takes the packed products
    (above 128 in every build, from 32 without AVX-512), where the form is on only once
    requested (its 3 N^2 of memory)."""
    teacher = qf.Teacher.power_law(d, 0.5, 1.0, noise=0.1)
    if frame == "explicit":
        teacher = explicit(teacher)
    kw = dict(width=width, lr=0.3 / d, seed=6, batch=batch)
    seq = qf.StiefelSGD(teacher, block=1, **kw)
    sims = [qf.StiefelSGD(teacher, block=11, threads=t, **kw) for t in (1, 2, 1)]
    assert sims[0]._kernel.factored == _factored_by_default(width)
    for s, on in zip(sims, (True, True, False)):
        s._kernel.factored = on  # True: also in the packed products (off there by default)
    assert [s._kernel.factored for s in sims] == [True, True, False]
    W0 = seq.W.copy()
    for n in (2 * width + 20, 37, 2 * width + 3):
        for sim in [seq] + sims:
            sim.run(n)
    np.testing.assert_allclose(sims[0].W, seq.W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sims[0].W, sims[2].W, rtol=0, atol=1e-12)
    assert np.array_equal(sims[0].W, sims[1].W)
    assert np.max(np.abs(seq.W - W0)) > 1e-3
    assert sims[0].orth_error() < sims[0].reortho_tol
    # formed at least once (at lr d = 0.3, M leaves its bounds within a few blocks, and the
    # blocks up to the next period multiple then run unfactored); never with the form off
    assert sims[0]._kernel.formations >= 1 and sims[2]._kernel.formations == 0


def test_factored_form_follows_thread_changes_made_while_it_is_off():
    """The formation's buffers (one per thread) follow sim.threads also when the form is
    off at the time: on, off, 1 -> 2 threads, on again, the run gives the bits of a run
    on two threads throughout (bits do not depend on the thread count)."""
    d, n = 2400, 144
    teacher = qf.Teacher.power_law(d, 0.5, 1.0)
    kw = dict(lr=1e-3 / d, seed=2, block=12)
    a, b = qf.StiefelSGD(teacher, n, threads=1, **kw), qf.StiefelSGD(teacher, n, threads=2, **kw)
    a._kernel.factored = True
    a._kernel.factored = False
    a.threads = 2
    a._kernel.factored = True
    b._kernel.factored = True
    for s in (a, b):
        s.run(3 * n)
    assert a._kernel.formations >= 1
    assert np.array_equal(a.W, b.W)


def test_factored_form_is_off_where_it_does_not_pay():
    """Not used below d = 16 N, at width 1 (its own column pass), sequentially or in
    float32 (whose rounding of D would carry max|W^T W - I| past its tolerance)."""
    t = qf.Teacher.power_law(1000, 0.5, 1.0)
    assert not qf.StiefelSGD(t, 8, lr=1e-4, block=8, dtype=np.float32)._kernel.factored
    assert qf.StiefelSGD(t, 62, lr=1e-4, block=8)._kernel.factored == _factored_by_default(62)
    assert qf.StiefelSGD(t, 16, lr=1e-4, block=8)._kernel.factored
    assert not qf.StiefelSGD(t, 63, lr=1e-4, block=8)._kernel.factored
    assert not qf.StiefelSGD(t, 1, lr=1e-4, block=8)._kernel.factored
    assert not qf.StiefelSGD(t, 8, lr=1e-4, block=1)._kernel.factored
    # the packed products (width 256 > 128): off unless requested, for its 3 N^2 of memory
    wide = qf.StiefelSGD(qf.Teacher.power_law(4096, 0.5, 1.0), 256, lr=1e-4, block=8)
    assert not wide._kernel.factored
    wide._kernel.factored = True
    assert wide._kernel.factored


def test_factored_form_keeps_drift_below_tolerance_at_large_steps():
    """At lr d = 2 a step's factor along z, a (1 + 2 lr e ||z||^2), swings far from 1, so
    M = I + D drifts from orthogonal quickly; W is then formed early (the LU's pivot
    bound) and rounding of D is budgeted (tol / 64), and W is probed after each formation.
    Over 60 calls of 500 steps the exact max|W^T W - I| stays below tol after every call,
    as without the factored form (without the probes it reached 1.5e-13 here, and 1.1e-11
    in the baseline build)."""
    d, n = 512, 16
    teacher = qf.Teacher.power_law(d, 0.45, 1.0, noise=0.1)
    sim = qf.StiefelSGD(teacher, n, lr=2.0 / d, seed=3, block=16)
    assert sim._kernel.factored
    worst = 0.0
    for _ in range(60):
        sim.run(500)
        worst = max(worst, sim.orth_error())
    assert np.isfinite(sim.W).all()
    assert worst < sim.reortho_tol, (worst, sim.reortho_stats)
