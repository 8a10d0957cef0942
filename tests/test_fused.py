"""The fused hot path equals the plain numpy formula (raw - pedestal[cell]) / gain with the mask,
for every fused built-in, on the simulated run with planted saturation and a missing module."""
import numpy as np
import pytest
from helpers import DARK_RUN, DATA_RUN, PROPOSAL
from smalldata.funcs.autocorrelation import Autocorrelation
from smalldata.funcs.azimuthal import AzimuthalBinning
from smalldata.funcs.projection import Projection
from smalldata.funcs.roi import ROI

from smalldata.config.producer import ProducerConfig  # noqa: I001 (first: the config imports calib)
from smalldata.calib.dark import dark_file_path
from smalldata.calib.detobject import DetObject
from smalldata.fused.plan import FusedPlan
from smalldata.io.runaccess import RunAccess
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.simulate import run_path
from smalldata.sums.cube import CubeAccumulator
from smalldata.sums.runsums import RunSums

GAIN = 15.0


class PixelSum(DetObjectFunc):
    """A user's function: it must get calibrated float32 frames, as without the fused path."""

    def __init__(self, name: str = "user"):
        super().__init__(name)
        self.seen = []

    def process(self, frames):
        assert frames.data.dtype == np.float32 and frames.fused is not None
        self.seen.append((frames.data.copy(), frames.valid.copy()))
        return {"sum": np.where(frames.valid, frames.data, 0).sum(axis=(1, 2, 3), dtype=np.float64)}


@pytest.fixture(scope="module")
def setup(sim_root, calib_dir):  # noqa: F811
    det = DetObject.from_dark_file("dssc", dark_file_path(calib_dir, PROPOSAL, DARK_RUN, "dssc"), gain=GAIN)
    access = RunAccess.from_directory(run_path(sim_root, PROPOSAL, DATA_RUN))
    raw = access.read_raw(det.modules, access.train_ids[3:9])  # module 3 misses trains 5 and 6
    assert not raw.present.all()
    m3 = det.module_index(3)
    raw.data[0, m3, 70:72, 400:410] = 511  # planted saturation inside the ROI
    raw.data[1, 0, :, 100:102] = 600       # ... and across the azimuthal rings
    return det, raw


def reference(det, raw):
    """The plain formula, in numpy: calibrated values and validity.

    The code multiplies by the float32 inverse gain (as the numpy path always did): the
    same as dividing by the gain to one float32 rounding, checked here too.
    """
    data, present = raw.data, raw.present
    ped = det.pedestal[:, det.cell_index(raw.cell_ids)].transpose(1, 0, 2, 3)   # (N, M, H, W)
    cal = (data.astype(np.float32) - ped) * np.float32(1.0 / GAIN)
    divided = (data.astype(np.float32) - ped) / np.float32(GAIN)
    np.testing.assert_allclose(cal, divided, rtol=np.finfo(np.float32).eps, atol=0)
    valid = det.mask & (data < 511) & present[:, :, None, None]
    return cal, valid


def functions():
    az = AzimuthalBinning(name="azav", center=(0.0004, -0.0003), q_bins=30, q_range=(8.0e7, 1.2e8),
                          polarization_fraction=0.99)
    roi = ROI(name="speckle", module=3, roi=[64, 128, 384, 512], threshold=0.2, write_image=True)
    roi.addFunc(Projection(name="p0", axis=0))
    roi.addFunc(Projection(name="p1", axis=1, mean=True))
    roi.addFunc(Autocorrelation(name="acorr", crop_size=5))  # not fused: reads the kernel's crop
    capped = ROI(name="capped", module=2, roi=[0, 40, 0, 200], threshold_max=1.5)
    whole = Projection(name="mod2", module=2, axis=1)
    return [az, roi, capped, whole, PixelSum()]


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_fused_equals_numpy_formula(setup):
    det, raw = setup
    cal, valid = reference(det, raw)
    n = len(raw)
    funcs = functions()
    for f in funcs:
        f.setup(det)
    sums = RunSums(valid.shape[1:], threshold=0.5, units="photon")
    cube = CubeAccumulator(2, ["a", "b"], valid.shape[1:], sum_squares=True, units="photon")
    keep = np.arange(n) % 3 != 1
    bins, labels = np.arange(n) % 2, (np.arange(n) // 2) % 2
    plan = FusedPlan(det, funcs, whole_modules=True)
    assert [f.name for f in plan.plain] == ["user"]
    frames = plan.run(raw, sums=sums, sums_keep=keep, cube=cube,
                      cube_group=cube.add_frames(bins, labels, keep=keep))
    sums.count_frames(keep.sum())
    out = {}
    for f in funcs:
        out.update(f.run(frames))

    # the user's function got the calibrated frames, bit for bit where valid
    data, ok = funcs[-1].seen[0]
    np.testing.assert_array_equal(ok, valid)
    np.testing.assert_array_equal(data[valid], cal[valid])

    # ROI, its projections and its crop (threshold 0.2: smaller values count as 0)
    m3, m2 = det.module_index(3), det.module_index(2)
    crop = np.where(valid[:, m3, 64:, 384:], cal[:, m3, 64:, 384:], 0).astype(np.float64)
    crop[crop < 0.2] = 0
    vcrop = valid[:, m3, 64:, 384:]
    np.testing.assert_allclose(out["speckle_sum"], crop.sum(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_array_equal(out["speckle_npix"], vcrop.sum(axis=(1, 2)))
    vmax = np.where(vcrop, crop, -np.inf).max(axis=(1, 2))
    np.testing.assert_array_equal(out["speckle_max"], np.where(np.isinf(vmax), np.nan, vmax))
    rows = np.arange(64, 128)
    np.testing.assert_allclose(out["speckle_com_y"], (crop.sum(axis=2) * rows).sum(1) / crop.sum(axis=(1, 2)),
                               rtol=1e-12)
    np.testing.assert_allclose(out["speckle_p0_profile"], crop.sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out["speckle_p0_npix"], vcrop.sum(axis=1))
    np.testing.assert_allclose(out["speckle_p1_profile"], crop.sum(axis=2) / vcrop.sum(axis=2), rtol=1e-12)
    np.testing.assert_array_equal(out["speckle_image"], np.where(vcrop, crop, np.nan).astype(np.float32))
    assert out["speckle_npix"][0] == vcrop[0].size - 20 - (~det.mask[m3, 64:, 384:]).sum()
    # threshold_max: values above it are not valid
    vcap = valid[:, m2, :40, :200] & (cal[:, m2, :40, :200] <= 1.5)
    np.testing.assert_array_equal(out["capped_npix"], vcap.sum(axis=(1, 2)))
    np.testing.assert_allclose(out["capped_sum"], np.where(vcap, cal[:, m2, :40, :200], 0)
                               .astype(np.float64).sum(axis=(1, 2)), rtol=1e-12)
    # a projection of a whole module
    np.testing.assert_allclose(out["mod2_profile"], np.where(valid[:, m2], cal[:, m2], 0)
                               .astype(np.float64).sum(axis=2), rtol=1e-12, atol=1e-9)

    # azimuthal: sum(I) / sum(c) over the valid pixels of each bin
    az = funcs[0]
    b = az._sums.bin_of_pixel
    c = az._sums.weights
    for i in range(n):
        use = (b >= 0) & valid[i].ravel()
        s = np.bincount(b[use], weights=cal[i].ravel()[use].astype(np.float64), minlength=30)
        w = np.bincount(b[use], weights=c[use], minlength=30)
        cnt = np.bincount(b[use], minlength=30)
        np.testing.assert_array_equal(out["azav_count"][i, 0], cnt)
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(out["azav_mean"][i, 0], s / w, rtol=2e-7)
    assert (out["azav_count"][1] < out["azav_count"][2]).any()  # the planted saturation counts

    # run sums and cube: the same integers as numpy's accumulators on the formula's frames
    ref_sums = RunSums(valid.shape[1:], threshold=0.5, units="photon")
    ref_sums.add(cal, valid=valid, keep=keep)
    ref_cube = CubeAccumulator(2, ["a", "b"], valid.shape[1:], sum_squares=True, units="photon")
    ref_cube.add(cal, bins, labels, valid=valid, keep=keep)
    for name in RunSums._sum_names + ("_max",):
        np.testing.assert_array_equal(getattr(sums, name), getattr(ref_sums, name), err_msg=name)
    for name in CubeAccumulator._int_names:
        np.testing.assert_array_equal(getattr(cube, name), getattr(ref_cube, name), err_msg=name)

    # and the numpy path of the same functions agrees (its azimuthal sums add float32
    # parts: near-zero means differ by ~1e-9 photons)
    plain = det.calibrate(raw)
    for f in funcs[:4]:
        for key, value in f.run(plain).items():
            np.testing.assert_allclose(out[key], value, rtol=2e-6, atol=1e-8, err_msg=key)


def test_results_follow_frame_subsets(setup):
    """A veto's subset of frames sees the same per-frame results."""
    det, raw = setup
    funcs = functions()[:2]
    for f in funcs:
        f.setup(det)
    frames = FusedPlan(det, funcs).run(raw)
    full = {}
    for f in funcs:
        full.update(f.run(frames))
    pick = np.array([4, 1])
    part = frames.subset(pick)
    assert part.data is None
    for f in funcs:
        for key, value in f.run(part).items():
            np.testing.assert_array_equal(value, full[key][pick], err_msg=key)


@pytest.mark.parametrize("batch_bytes", [1, 7 * 2 ** 17])
def test_average_image_equals_formula(sim_root, calib_dir, batch_bytes):  # noqa: F811
    """AvImage's computation: mean and max of the plain formula over the selected frames of
    each module, batch by batch (1 byte: every train, of 3 or 4 frames, is read on its own;
    7 frames of 128 kB: two trains)."""
    from smalldata.sums.average import average_image, frame_keys

    path = dark_file_path(calib_dir, PROPOSAL, DARK_RUN, "dssc")
    access = RunAccess.from_directory(run_path(sim_root, PROPOSAL, DATA_RUN))
    det = DetObject.from_dark_file("dssc", path, gain=GAIN)
    raw = access.read_raw(det.modules, access.train_ids)
    cal, valid = reference(det, raw)
    pick = np.arange(len(raw)) % 3 != 0
    keys = frame_keys(raw.train_ids[pick], raw.pulse_ids[pick])

    def make(mods):
        return DetObject.from_dark_file("dssc", path, modules=mods, gain=GAIN)

    mean = average_image(access, make, det.modules, access.train_ids, keys, "mean", batch_bytes)
    peak = average_image(access, make, det.modules, access.train_ids, keys, "max", batch_bytes)
    use = valid & pick[:, None, None, None]
    with np.errstate(invalid="ignore"):
        expected = np.where(use, cal, 0).astype(np.float64).sum(axis=0) / use.sum(axis=0)
    assert not raw.present.all()  # a module misses frames
    # the mean comes from raw sums: exact but for the float32 rounding of each frame's calibrated value
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(mean), use.sum(axis=0) == 0)
    np.testing.assert_array_equal(peak, np.where(use.any(axis=0), np.where(use, cal, -np.inf).max(axis=0), np.nan))


def test_raw_mean_equals_formula():
    """The raw-sum mean of AvImage: saturated pixels and frames not kept are left out, cell by cell."""
    from smalldata.fused.rawmean import RawMean

    rng = np.random.default_rng(5)
    n, n_cells = 40, 7
    ped = rng.normal(40, 3, (n_cells, 1, 16, 32)).astype(np.float32)
    raw = rng.integers(20, 300, (n, 16, 32)).astype(np.uint16)
    raw[rng.random(raw.shape) < 0.01] = 511  # saturated: not valid
    raw[3, :, :5] = 600
    cells = rng.integers(0, n_cells, n)
    keep = rng.random(n) < 0.8
    inv_gain = np.float32(1 / 15)
    good = np.ones((1, 16, 32), bool)
    good[0, 2, 3] = False
    acc = RawMean(n_cells, (16, 32), 511)
    for part in (slice(0, 13), slice(13, 40)):  # two batches
        acc.add(raw[part], cells[part], keep[part], ped)
    valid = (raw < 511) & keep[:, None, None]
    cal = (raw.astype(np.float32) - ped[cells, 0]) * inv_gain
    with np.errstate(invalid="ignore"):
        expected = np.where(valid, cal, 0).astype(np.float64).sum(axis=0) / valid.sum(axis=0)
    expected[~good[0] | (valid.sum(axis=0) == 0)] = np.nan
    got = acc.mean(ped, inv_gain, good)
    assert acc.n_frames == keep.sum() and np.isnan(got[2, 3])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_rounding_equals_numpy_rint():
    """The kernel's fixed-point rounding is numpy's float32 np.rint, ties to even, over the whole range."""
    from smalldata.fused.rowsums import fixed_point

    rng = np.random.default_rng(2)
    y = np.concatenate([np.arange(-40, 40, 0.5), rng.uniform(-2.0 ** 31, 2.0 ** 31, 5000),
                        rng.uniform(-2.0 ** 23, 2.0 ** 23, 5000), rng.normal(0, 100, 5000),
                        [2.0 ** 22 - 0.5, 2.0 ** 22 + 1, -(2.0 ** 22) + 0.5, 2.0 ** 23 - 0.5, 0.0, -0.0]]).astype(np.float32)
    got = np.array([fixed_point(v, np.float32(1.0)) for v in y], dtype=np.float32)
    np.testing.assert_array_equal(got, np.rint(y))


KERNEL_TYPES_SCRIPT = """
import sys
import numpy as np
from smalldata.calib.detobject import DetObject
from smalldata.fused.kernels import fused_pass
from smalldata.fused.plan import FusedPlan
from smalldata.io.runaccess import RunAccess
from smalldata.sums.cube import CubeAccumulator
from smalldata.sums.runsums import RunSums

det = DetObject.from_dark_file("dssc", sys.argv[1], gain=15.0)
access = RunAccess.from_directory(sys.argv[2])
raw = access.read_raw(det.modules, access.train_ids[:2])
plan = FusedPlan(det, (), whole_modules=True)
plan.load_kernel()
loaded = list(fused_pass.signatures)
n = len(raw)
plan.run(raw)
plan.run(raw, sums=RunSums(det.mask.shape, threshold=0.5), sums_keep=np.ones(n, bool),
         cube=CubeAccumulator(2, ["a"], det.mask.shape, sum_squares=True), cube_group=np.arange(n) % 2)
print(len(loaded), len(fused_pass.signatures))
"""


def test_kernel_loaded_at_setup_serves_every_batch(sim_root, calib_dir):  # noqa: F811
    """``load_kernel`` (called at set-up) loads the one specialisation that batches with and without
    run sums and cube then use: no rank compiles or loads the kernel inside its event loop."""
    import subprocess
    import sys

    dark = dark_file_path(calib_dir, PROPOSAL, DARK_RUN, "dssc")
    out = subprocess.run([sys.executable, "-c", KERNEL_TYPES_SCRIPT, str(dark),
                          str(run_path(sim_root, PROPOSAL, DATA_RUN))], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "1"]
