"""Exact cubes and run sums (smalldata.sums.cube, .fixedpoint, .runsums); scan binning in test_binning.py."""
import os
import subprocess
import sys
import textwrap
import zlib

import h5py
import numpy as np
import pytest

from smalldata.errors import ConfigError, DataError
from smalldata.pulses.patterns import FramePattern
from smalldata.sums.binning import ScanBinning
from smalldata.sums.cube import CubeAccumulator
from smalldata.sums.fixedpoint import to_fixed
from smalldata.sums.runsums import RunSums

INT_ARRAYS = ("_sum", "_pixel_count", "_sum_sq", "_count", "_xgm_sum", "_xgm_count", "_no_bin", "_n_bad")


# ---------------------------------------------------------------------------- cube exactness
def test_fixed_point_float32_path_equals_float64():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 100, 10000), [0.5 / 4096, 1.5 / 4096, -2.5 / 4096, 2.0 ** 19, np.nan,
                                                    np.inf, 1e-40]]).astype(np.float32)
    q32, ok32, bad32 = to_fixed(x, 12)
    q64, ok64, bad64 = to_fixed(x.astype(np.float64), 12)
    assert np.array_equal(q32, q64) and np.array_equal(ok32, ok64) and bad32 == bad64 == 3
    assert q32[10000:10003].tolist() == [0, 2, -2]  # round half to even
    assert np.array_equal(q32[:10000], np.rint(x[:10000].astype(np.float64) * 4096).astype(np.int64))
    q, ok, bad = to_fixed(x, 12, valid=np.arange(len(x)) % 2 == 0)
    assert bad == 1 and not ok[1::2].any() and (q[1::2] == 0).all()


def random_frames(n=240, shape=(4, 5, 6), n_bins=5, n_labels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = (rng.normal(0, 80, (n,) + shape)).astype(np.float32)
    images[rng.random(images.shape) < 0.01] = np.nan
    valid = rng.random(images.shape) > 0.05
    bins = rng.integers(-1, n_bins, n)
    labels = rng.integers(0, n_labels, n)
    xgm = rng.lognormal(6, 0.3, n)
    xgm[rng.random(n) < 0.1] = np.nan
    keep = rng.random(n) > 0.1
    return images, valid, bins, labels, xgm, keep


def accumulate(parts, shape=(4, 5, 6), n_bins=5, labels=("pumped", "unpumped", "dark")):
    cube = CubeAccumulator(n_bins, labels, shape, sum_squares=True)
    for images, valid, bins, lab, xgm, keep in parts:
        cube.add(images, bins, lab, xgm=xgm, valid=valid, keep=keep)
    return cube


def split(arrays, sizes, order):
    idx = np.arange(len(arrays[0]))[order]
    out, start = [], 0
    for size in sizes:
        sel = idx[start:start + size]
        out.append(tuple(a[sel] for a in arrays))
        start += size
    return out


def assert_identical(a, b):
    for name in INT_ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_cube_bit_identical_for_any_batches_and_order():
    arrays = random_frames()
    whole = accumulate([arrays])
    rng = np.random.default_rng(7)
    for trial in range(4):
        cuts = np.sort(rng.choice(np.arange(1, 240), size=trial * 5 + 1, replace=False))
        sizes = np.diff(np.r_[0, cuts, 240])
        order = rng.permutation(240) if trial % 2 else np.arange(240)
        assert_identical(accumulate(split(arrays, sizes, order)), whole)
    # merging per-"rank" accumulators in any grouping
    a = accumulate(split(arrays, [100], np.arange(240)))
    b = accumulate(split(arrays, [140], np.arange(100, 340) % 240))
    assert_identical(b.merge(a), whole)
    # the float64 sums agree with numpy's to the fixed-point resolution
    images, valid, bins, lab, xgm, keep = arrays
    ok = keep & (bins >= 0)
    use = valid & np.isfinite(images)
    for g in [(0, 0), (2, 1), (4, 2)]:
        sel = ok & (bins == g[0]) & (lab == g[1])
        ref = np.where(use[sel], images[sel], 0).astype(np.float64).sum(axis=0)
        np.testing.assert_allclose(whole.sum[g], ref, atol=sel.sum() * 2 ** -13 + 1e-9)
        assert np.array_equal(whole.pixel_count[g], use[sel].sum(axis=0))
        assert whole.count[g] == sel.sum()
        xs = xgm[sel]
        assert whole.xgm_count[g] == np.isfinite(xs).sum()
        np.testing.assert_allclose(whole.xgm_sum[g], np.nansum(xs), atol=len(xs) * 2 ** -16)
        mean = ref / np.maximum(use[sel].sum(axis=0), 1)
        np.testing.assert_allclose(np.nan_to_num(whole.mean()[g]), mean, atol=2 ** -12)
        np.testing.assert_allclose(whole.xgm_normalised_mean()[g], whole.mean()[g] / np.nanmean(xs), rtol=1e-6)
        sq = (np.where(use[sel], images[sel], 0).astype(np.float64) ** 2).sum(axis=0)
        std = np.sqrt(np.maximum(sq / np.maximum(use[sel].sum(axis=0), 1) - mean ** 2, 0))
        np.testing.assert_allclose(np.nan_to_num(whole.std()[g]), std, atol=1e-3)
    assert whole.n_no_bin.tolist() == [int(np.sum(keep & (bins < 0) & (lab == k))) for k in range(3)]
    assert whole.n_bad_values == int(np.sum((valid & np.isnan(images))[ok]))


def test_cube_write_read_roundtrip(tmp_path):
    arrays = random_frames(n=60)
    binning = ScanBinning(edges=np.linspace(0, 5, 6), name="delay", units="mm")
    cube = CubeAccumulator(5, ("pumped", "unpumped", "dark"), (4, 5, 6), sum_squares=True, binning=binning)
    images, valid, bins, lab, xgm, keep = arrays
    cube.add(images, bins, lab, xgm=xgm, valid=valid, keep=keep)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        cube.write(f.create_group("Sums/dssc_cube"))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        g = f["Sums/dssc_cube"]
        assert g["sum"].attrs["units"] == "ADU" and g["bin_centres"].attrs["units"] == "mm"
        assert g["sum"].dtype == np.float64 and g["sum"].shape == (5, 3, 4, 5, 6)
        assert g["xgm_sum"].attrs["units"] == "uJ" and g["count"].attrs["units"] == "frame"
        assert [s.decode() for s in g["labels"][()]] == ["pumped", "unpumped", "dark"]
        back = CubeAccumulator.read(g)
    assert_identical(back, cube)
    assert np.array_equal(back.mean(), cube.mean(), equal_nan=True)
    assert back.binning.name == "delay" and np.array_equal(back.binning.edges, binning.edges)


def test_cube_validation():
    with pytest.raises(ConfigError):
        CubeAccumulator(0, ("a",), (2,))
    with pytest.raises(ConfigError):
        CubeAccumulator(2, ("a", "a"), (2,))
    with pytest.raises(ConfigError):
        CubeAccumulator(2, ("a",), (2,), scale_bits=40)
    cube = CubeAccumulator(2, ("a",), (2,))
    with pytest.raises(DataError):
        cube.add(np.zeros((3, 3)), np.zeros(3), np.zeros(3))
    with pytest.raises(DataError):
        cube.add(np.zeros((3, 2)), np.array([0, 2, 0]), np.zeros(3))
    with pytest.raises(ConfigError):
        cube.std()


def test_pump_effect_recovered_from_cube():
    """Pumped / unpumped ring intensity vs delay, from XGM-normalised cube means."""
    rng = np.random.default_rng(11)
    delays = np.repeat(np.linspace(0.0, 5.0, 6), 10)          # 60 trains, mm
    n_frames, shape = 20, (8, 16)
    amplitude, t0, tau = 0.4, 1.0, 1.5
    factor = np.where(delays > t0, 1 - amplitude * (1 - np.exp(-(delays - t0) / tau)), 1.0)
    pattern = FramePattern(["pumped", "unpumped"])
    ring = rng.uniform(0.5, 2.0, shape)                          # photons per uJ/1000
    fidx = np.tile(np.arange(n_frames), len(delays))
    train = np.repeat(np.arange(len(delays)), n_frames)
    xgm = rng.lognormal(np.log(1000.0), 0.25, len(fidx))
    pumped = pattern.label_ids(fidx) == 0
    expected = ring[None] * (xgm / 1000.0)[:, None, None] * np.where(pumped, factor[train], 1.0)[:, None, None]
    images = rng.poisson(expected * 20).astype(np.float32) / 20  # 20 photons per unit: shot noise
    binning = ScanBinning(width=1.0).fit(delays)
    cube = CubeAccumulator(binning.n_bins, pattern.unique_labels, shape, binning=binning, units="photon")
    for t0_ in range(0, len(delays), 7):                         # batches of 7 trains
        sel = (train >= t0_) & (train < t0_ + 7)
        cube.add(images[sel], binning.assign(delays[train[sel]]), pattern.label_ids(fidx[sel]), xgm=xgm[sel])
    norm = cube.xgm_normalised_mean().sum(axis=(2, 3))           # (bins, labels)
    ratio = norm[:, 0] / norm[:, 1]
    truth = np.where(binning.centres > t0, 1 - amplitude * (1 - np.exp(-(binning.centres - t0) / tau)), 1.0)
    np.testing.assert_allclose(ratio, truth, atol=0.01)
    assert ratio[-1] < 0.7 and abs(ratio[0] - 1) < 0.01


# ---------------------------------------------------------------------------- run sums
def test_run_sums_exact_and_correct(tmp_path):
    images, valid, _, _, _, keep = random_frames(n=90, seed=3)
    whole = RunSums((4, 5, 6), threshold=50.0)
    whole.add(images, valid=valid, keep=keep)
    parts = RunSums((4, 5, 6), threshold=50.0)
    for s in (slice(0, 13), slice(13, 14), slice(14, 90)):
        parts.add(images[s], valid=valid[s], keep=keep[s])
    for name in ("_sum", "_pixel_count", "_above", "_n_frames", "_max"):
        assert np.array_equal(getattr(whole, name), getattr(parts, name)), name
    use = valid & np.isfinite(images) & keep[:, None, None, None]
    ref_mean = np.where(use, images, 0).astype(np.float64).sum(0) / use.sum(0)
    np.testing.assert_allclose(whole.mean(), ref_mean, atol=2 ** -12)
    assert np.array_equal(whole.max(), np.where(use, images, -np.inf).max(0))
    assert np.array_equal(whole.count_above(), (use & (images > 50.0)).sum(0))
    assert whole.n_frames == keep.sum()
    with h5py.File(tmp_path / "s.h5", "w") as f:
        whole.write(f.create_group("Sums"), "dssc")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert sorted(f["Sums"]) == ["dssc_count_above", "dssc_max", "dssc_mean", "dssc_pixel_count"]
        assert f["Sums/dssc_mean"].attrs["units"] == "ADU"
        assert f["Sums/dssc_count_above"].attrs["threshold"] == 50.0


# ---------------------------------------------------------------------------- MPI
MPI_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from mpi4py import MPI
    sys.path.insert(0, {tests!r})
    from test_cube import INT_ARRAYS, accumulate, random_frames, split
    from smalldata.sums.runsums import RunSums

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    arrays = random_frames(n=300, seed=21)
    mine = np.arange(300)[rank::size]                      # interleaved frames, rank-dependent batches
    parts = split(tuple(a[mine] for a in arrays), [7 + 5 * rank] * 100, np.arange(len(mine)))
    cube = accumulate([p for p in parts if len(p[0])]).reduce(comm)
    sums = RunSums((4, 5, 6), threshold=20.0)
    for images, valid, _, _, _, keep in parts:
        sums.add(images, valid=valid, keep=keep)
    sums = sums.reduce(comm)
    if rank == 0:
        ref = accumulate([arrays])
        for name in INT_ARRAYS:
            assert np.array_equal(getattr(cube, name), getattr(ref, name)), name
        one = RunSums((4, 5, 6), threshold=20.0)
        one.add(arrays[0], valid=arrays[1], keep=arrays[5])
        for name in ("_sum", "_pixel_count", "_above", "_n_frames", "_max"):
            assert np.array_equal(getattr(sums, name), getattr(one, name)), name
        print("IDENTICAL", size, int(cube._count.sum()))
    else:
        assert cube is None and sums is None
""")


@pytest.mark.mpi
def test_reduce_over_two_ranks_equals_one_rank(tmp_path):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    assert os.path.exists(mpiexec), f"no mpiexec next to {sys.executable}: install the project (mpich wheel)"
    script = tmp_path / "reduce_check.py"
    script.write_text(MPI_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n_expected = int(np.sum(random_frames(n=300, seed=21)[5] & (random_frames(n=300, seed=21)[2] >= 0)))
    assert f"IDENTICAL 2 {n_expected}" in proc.stdout


# ---------------------------------------------------------------------------- fast kernels vs a slow reference
def reference_fixed(frame, scale_bits, valid=None):
    """Per-frame fixed point as first specified: float64 arithmetic, bad values not used."""
    x = np.asarray(frame, dtype=np.float64)
    ok = np.abs(x) < 2.0 ** (31 - scale_bits)
    n_bad = int(np.count_nonzero(~ok if valid is None else valid & ~ok))
    used = ok if valid is None else ok & valid
    q = np.zeros(x.shape, dtype=np.int64)
    q[used] = np.rint(x[used] * 2.0 ** scale_bits).astype(np.int64)
    return q, used, n_bad


def reference_cube(images, bins, labels, n_bins, n_labels, scale_bits=12, xgm=None, valid=None, keep=None):
    """Frame-by-frame cube sums (int64) with Python loops."""
    shape, n_groups = images.shape[1:], n_bins * n_labels
    out = {"_sum": np.zeros((n_groups,) + shape, np.int64), "_pixel_count": np.zeros((n_groups,) + shape, np.int64),
           "_sum_sq": np.zeros((n_groups,) + shape, np.int64), "_count": np.zeros(n_groups, np.int64),
           "_xgm_sum": np.zeros(n_groups, np.int64), "_xgm_count": np.zeros(n_groups, np.int64),
           "_no_bin": np.zeros(n_labels, np.int64), "_n_bad": np.zeros(1, np.int64)}
    half = (1 << (scale_bits - 1)) if scale_bits else 0
    for i in range(len(images)):
        if keep is not None and not keep[i]:
            continue
        if bins[i] < 0:
            out["_no_bin"][labels[i]] += 1
            continue
        g = bins[i] * n_labels + labels[i]
        q, used, n_bad = reference_fixed(images[i], scale_bits, None if valid is None else valid[i])
        out["_sum"][g] += q
        out["_pixel_count"][g] += used
        out["_sum_sq"][g] += (q * q + half) >> scale_bits
        out["_count"][g] += 1
        out["_n_bad"][0] += n_bad
        if xgm is not None and not np.isnan(xgm[i]):
            qx, okx, bad = reference_fixed(np.array([xgm[i]]), 16)
            out["_xgm_sum"][g] += qx[0]
            out["_xgm_count"][g] += int(okx[0])
            out["_n_bad"][0] += bad
    return out


def reference_run_sums(images, scale_bits=12, threshold=None, valid=None, keep=None):
    shape = images.shape[1:]
    out = {"_sum": np.zeros(shape, np.int64), "_pixel_count": np.zeros(shape, np.int64),
           "_above": np.zeros(shape, np.int64), "_max": np.full(shape, -np.inf, np.float32)}
    for i in range(len(images)):
        if keep is not None and not keep[i]:
            continue
        q, used, _ = reference_fixed(images[i], scale_bits, None if valid is None else valid[i])
        out["_sum"] += q
        out["_pixel_count"] += used
        out["_max"] = np.maximum(out["_max"], np.where(used, images[i], -np.inf).astype(np.float32))
        if threshold is not None:
            out["_above"] += used & (images[i] > threshold)
    return out


def nasty_frames(rng, n, shape, dtype, spread, specials=True):
    """Random frames with NaN, inf, out-of-range, rounding ties, -0.0, fully and partly invalid pixels."""
    x = rng.normal(0, spread, (n,) + shape)
    if specials:
        flat = x.reshape(n, -1)
        picks = rng.choice(flat.size, size=min(40, flat.size // 4), replace=False)
        values = [np.nan, np.inf, -np.inf, 2.0 ** 19, -2.0 ** 19, 2.0 ** 19 - 2.0 ** -5, 2.0 ** 25, -0.0,
                  0.5 / 4096, 1.5 / 4096, -2.5 / 4096, 1e-40]
        flat.flat[picks] = np.resize(values, len(picks))
    if np.issubdtype(dtype, np.integer):
        x = np.clip(np.nan_to_num(x), -30000, 30000)
    x = x.astype(dtype)
    valid = rng.random(x.shape) > 0.1
    valid.reshape(n, -1)[:, 0] = False          # a pixel never valid
    valid.reshape(n, -1)[:, 1] = True           # a pixel always valid
    valid[n // 2] = False                       # a frame without valid pixels (missing module)
    return x, valid


KEEPS = {"all": lambda n, rng: None, "every_other": lambda n, rng: np.arange(n) % 2 == 0,
         "dense": lambda n, rng: rng.random(n) > 0.15, "sparse": lambda n, rng: rng.random(n) < 0.2}


@pytest.mark.parametrize("dtype,spread,specials", [(np.float32, 80.0, True), (np.float32, 1.0, False),
                                                    (np.float32, 1.0, True), (np.float64, 80.0, True),
                                                    (np.int16, 300.0, False)])
@pytest.mark.parametrize("keep_mode", sorted(KEEPS))
@pytest.mark.parametrize("with_valid", [True, False])
def test_fast_cube_equals_reference(monkeypatch, dtype, spread, specials, keep_mode, with_valid):
    """Blocked kernels (clean and masked blocks, float32 and float64 sums, column corrections) = reference."""
    import smalldata.sums.fixedpoint as fixedpoint
    monkeypatch.setattr(fixedpoint, "BLOCK_ELEMENTS", 2000)  # blocks of 1024 pixels (the minimum): 3 blocks
    key = repr((np.dtype(dtype).name, spread, specials, keep_mode, with_valid))
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    n, shape, n_bins, n_labels = 60, (3, 7, 110), 3, 2
    images, valid = nasty_frames(rng, n, shape, dtype, spread, specials)
    valid = valid if with_valid else None
    bins = np.repeat(rng.integers(-1, n_bins, n // 10), 10)       # per train of 10 frames
    labels = np.arange(n) % n_labels                              # alternating pump / probe
    xgm = rng.lognormal(6, 0.3, n)
    xgm[::7] = np.nan
    xgm[5] = np.inf
    keep = KEEPS[keep_mode](n, rng)
    cube = CubeAccumulator(n_bins, ("pumped", "unpumped"), shape, sum_squares=True)
    cube.add(images, bins, labels, xgm=xgm, valid=valid, keep=keep)
    ref = reference_cube(images, bins, labels, n_bins, n_labels, xgm=xgm, valid=valid, keep=keep)
    for name, expected in ref.items():
        got = getattr(cube, name)
        assert np.array_equal(got.reshape(expected.shape), expected), name
    threshold = 0.5 if keep_mode != "dense" else -3.0
    sums = RunSums(shape, threshold=threshold)
    sums.add(images, valid=valid, keep=keep)
    shared_cube, shared_sums = CubeAccumulator(n_bins, ("pumped", "unpumped"), shape, True), RunSums(shape, threshold)
    shared_cube.add(images, bins, labels, xgm=xgm, valid=valid, keep=keep, sums=shared_sums)
    assert_identical(shared_cube, cube)
    ref = reference_run_sums(images, threshold=threshold, valid=valid, keep=keep)
    ref["_n_frames"] = np.array([n if keep is None else keep.sum()])
    for result in (sums, shared_sums):
        for name, expected in ref.items():
            got = getattr(result, name).reshape(expected.shape)
            if name == "_max":  # bit for bit
                assert np.array_equal(got.view(np.int32), expected.view(np.int32)), name
            else:
                assert np.array_equal(got, expected), name


@pytest.mark.parametrize("n_frames", [16, 17, 300])
def test_fast_sums_exact_at_the_float32_bound(n_frames):
    """Fixed-point sums near the float32 limit 2**24, and more than 255 frames (wider counts)."""
    q = 2 ** 20 - 1                                               # odd: float32 would round sums above 2**24
    images = np.full((n_frames, 2, 3), q / 4096, dtype=np.float32)
    images[:, 0, 0] = -q / 4096
    valid = np.ones(images.shape, dtype=bool)
    valid[1, 1, 1] = False
    cube = CubeAccumulator(1, ("image",), (2, 3))
    cube.add(images, np.zeros(n_frames), np.zeros(n_frames), valid=valid)
    sums = RunSums((2, 3))
    sums.add(images, valid=valid)
    expected = np.full((2, 3), n_frames * q, dtype=np.int64)
    expected[0, 0] = -n_frames * q
    expected[1, 1] -= q
    assert np.array_equal(cube._sum.reshape(2, 3), expected) and np.array_equal(sums._sum.reshape(2, 3), expected)
    assert cube.pixel_count[0, 0, 1, 1] == n_frames - 1 == sums.pixel_count[1, 1]


def test_write_compresses_counts_only(tmp_path):
    images, valid, bins, lab, xgm, keep = random_frames(n=30)
    cube = CubeAccumulator(5, ("pumped", "unpumped", "dark"), (4, 5, 6))
    cube.add(images, bins, lab, xgm=xgm, valid=valid, keep=keep)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        cube.write(f.create_group("a"), compression="gzip")
        cube.write(f.create_group("b"), compression="gzip", sum_compression="gzip")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["a/pixel_count"].compression == "gzip" and f["a/sum"].compression is None
        assert f["b/sum"].compression == "gzip"
        assert_identical(CubeAccumulator.read(f["a"]), cube)
        assert_identical(CubeAccumulator.read(f["b"]), cube)


def test_shared_sums_without_binned_frames_or_with_another_layout():
    images, valid, _, _, _, keep = random_frames(n=20)
    cube, alone = CubeAccumulator(2, ("a",), (4, 5, 6)), RunSums((4, 5, 6), threshold=1.0)
    alone.add(images, valid=valid, keep=keep)
    for sums in (RunSums((4, 5, 6), threshold=1.0), RunSums((4, 5, 6), threshold=1.0, scale_bits=10)):
        cube.add(images, np.full(20, -1), np.zeros(20), valid=valid, keep=keep, sums=sums)  # no frame in a bin
        cube.add(images, np.zeros(20), np.zeros(20), valid=valid, keep=keep, sums=sums)
        if sums.scale_bits == alone.scale_bits:
            assert np.array_equal(sums._sum, 2 * alone._sum) and np.array_equal(sums._max, alone._max)
        assert sums.n_frames == 2 * alone.n_frames and np.array_equal(sums._above, 2 * alone._above)
