"""DetObject: geometry equals extra-geom's, planted photons recovered, common mode, masks, validity."""
import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
from helpers import DARK_RUN, DATA_RUN, PROPOSAL

from smalldata.calib.dark import dark_file_path
from smalldata.calib.detobject import DetObject
from smalldata.calib.masks import asic_edge_mask
from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
from smalldata.errors import CalibrationError, ConfigError
from smalldata.geometry.positions import default_geometry_file
from smalldata.io.runaccess import RunAccess
from smalldata.simulate import read_truth, run_path


@pytest.fixture(scope="module")
def dark_file(calib_dir):
    return dark_file_path(calib_dir, PROPOSAL, DARK_RUN)


@pytest.fixture(scope="module")
def truth(sim_root):
    return read_truth(sim_root, PROPOSAL, DATA_RUN)


@pytest.fixture(scope="module")
def raw(sim_root, truth):
    access = RunAccess.from_directory(run_path(sim_root, PROPOSAL, DATA_RUN))
    batch = access.read_raw(tuple(int(m) for m in truth["modules"]), access.train_ids)
    assert len(batch) == len(truth["frame_photons"])
    return batch


@pytest.fixture(scope="module")
def det_adu(dark_file):
    return DetObject.from_dark_file("dssc", dark_file)


# ---------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("shift_m", [0.0, 2.5e-3])
def test_positions_equal_extra_geom(dark_file, shift_m):
    from extra_geom import DSSC_1MGeometry

    quads = [(x + shift_m, y - shift_m) for x, y in DSSC_DEFAULT_QUAD_POSITIONS]
    det = DetObject.from_dark_file("dssc", dark_file, quadrant_positions=quads)
    geom = DSSC_1MGeometry.from_h5_file_and_quad_positions(str(default_geometry_file()),
                                                          [(x * 1e3, y * 1e3) for x, y in quads])
    pos = geom.get_pixel_positions()  # metres
    for i, m in enumerate(det.modules):
        np.testing.assert_array_equal(det.x[i], pos[m, ..., 0])
        np.testing.assert_array_equal(det.y[i], pos[m, ..., 1])
        np.testing.assert_array_equal(det.z[i], pos[m, ..., 2])
    assert det.x.shape == (len(det.modules), 128, 512) and np.abs(det.x).max() < 0.2  # metres


# ---------------------------------------------------------------------------- calibration numbers
def test_calibrated_photons_match_planted(dark_file, raw, truth):
    gain = float(truth["gain_adu_per_photon"])
    det = DetObject.from_dark_file("dssc", dark_file, gain=gain)
    frames = det.calibrate(raw)
    assert frames.units == "photon" and frames.data.dtype == np.float32
    n_frames = len(frames)
    for i, m in enumerate(det.modules):
        summed = np.where(frames.valid[:, i], frames.data[:, i], 0).sum(axis=(1, 2), dtype=np.float64)
        # photons are Poisson with a map proportional to mean_photons: the good pixels get a known share
        share = float((truth["mean_photons"][i] * det.mask[i]).sum() / truth["mean_photons"][i].sum())
        planted = truth["frame_photons"][:, i]
        expected = planted * share
        # noise of a module sum: sqrt(sum of pixel variances) / gain (~35 photons), plus the binomial share
        sigma = np.sqrt((det.noise[i].mean(axis=0) ** 2)[det.mask[i]].sum()) / gain
        sigma = np.sqrt(sigma ** 2 + planted * share * (1 - share))
        resid = (summed - expected) / sigma
        assert planted.max() > 5 * sigma.max(), "the planted signal should stand out of the noise"
        assert abs(resid.mean()) < 4 / np.sqrt(n_frames), f"module {m}: bias {resid.mean():.2f} sigma"
        assert 0.7 < resid.std() < 1.3, f"module {m}: scatter {resid.std():.2f} sigma"
        assert np.abs(resid).max() < 5


def test_common_mode_removes_row_offsets(dark_file, raw, det_adu):
    rng = np.random.default_rng(11)
    n, n_mod = raw.data.shape[:2]
    offsets = rng.integers(-6, 7, (n, n_mod, 128, 8))  # per frame, module, pixel row and ASIC
    shifted = np.clip(raw.data.astype(np.int64) + np.repeat(offsets, 64, axis=-1), 0, 511).astype(np.uint16)
    shifted_batch = replace(raw, data=shifted)
    reference = det_adu.calibrate(raw)
    plain = det_adu.calibrate(shifted_batch)
    det_cm = DetObject.from_dark_file("dssc", dark_file, common_mode="asic_row_median")
    corrected = det_cm.calibrate(shifted_batch)
    ok = reference.valid & corrected.valid & (shifted > 0) & (shifted < 511)
    before = np.sqrt(np.mean((plain.data - reference.data)[ok] ** 2))
    after = np.sqrt(np.mean((corrected.data - reference.data)[ok] ** 2))
    assert before > 3.0  # planted offsets: RMS of uniform -6..6 is 3.7 ADU
    # what remains is the error of a median of ~62 noisy pixels (~0.3 ADU), lit pixels excluded
    assert after < 0.5, f"common mode left {after:.2f} ADU RMS"
    # the unshifted data have no common mode: the correction leaves them (nearly) alone
    untouched = det_cm.calibrate(raw)
    both = reference.valid & untouched.valid
    assert np.sqrt(np.mean((untouched.data - reference.data)[both] ** 2)) < 0.5


# ---------------------------------------------------------------------------- validity and errors
def test_valid_saturation_presence_and_cells(det_adu, raw):
    data = raw.data[:4].copy()
    data[0, 0, 5, 7] = 511
    present = raw.present[:4].copy()
    present[1, 1] = False
    batch = replace(raw, train_ids=raw.train_ids[:4], pulse_ids=raw.pulse_ids[:4], cell_ids=raw.cell_ids[:4],
                    frame_index=raw.frame_index[:4], data=data, present=present)
    frames = det_adu.calibrate(batch)
    assert frames.units == "ADU" and frames.modules == det_adu.modules
    assert det_adu.mask[0, 5, 7] and not frames.valid[0, 0, 5, 7]
    assert not frames.valid[1, 1].any() and frames.valid[1, 0].sum() == det_adu.mask[0].sum() - np.count_nonzero(
        data[1, 0][det_adu.mask[0]] >= 511)
    counts = det_adu.saturated_count(batch)
    assert counts.shape == (4, len(det_adu.modules)) and counts[0, 0] >= 1
    ped = det_adu.pedestal[1, det_adu.cell_index(batch.cell_ids[2:3])[0]]
    np.testing.assert_array_equal(frames.data[2, 1], (data[2, 1] - ped).astype(np.float32))
    bad_cells = replace(batch, cell_ids=np.array([0, 1, 700, 2], np.uint16))
    with pytest.raises(CalibrationError, match=r"memory cells 700 .*dark run 615"):
        det_adu.calibrate(bad_cells)


# ---------------------------------------------------------------------------- masks
def test_asic_edge_mask():
    edges = asic_edge_mask(2)
    assert edges.shape == (2, 128, 512)
    assert edges[0].sum() == 16 * 62 * 62
    for r, c in ((0, 0), (63, 10), (64, 10), (10, 63), (10, 64), (127, 511)):
        assert not edges[1, r, c]
    assert edges[1, 1, 1] and edges[1, 62, 62] and edges[1, 65, 65]


def test_user_mask_files_and_combination(tmp_path, dark_file, det_adu, raw):
    full = np.ones((16, 128, 512), bool)
    m2, m3 = det_adu.modules
    full[m3, 10, 20] = False
    full[m2, 30:40, 100] = False
    np.save(tmp_path / "mask.npy", full)
    det = DetObject.from_dark_file("dssc", dark_file, user_mask=tmp_path / "mask.npy")
    assert not det.mask[1, 10, 20] and not det.mask[0, 35, 100] and not det.masks["user"][0, 30, 100]
    assert np.array_equal(det.mask, det.masks["status"] & det.masks["edges"] & det.masks["user"])
    assert np.array_equal(det.masks["status"], det.status_mask == 0)
    assert not det.calibrate(raw).valid[:, 1, 10, 20].any()
    with h5py.File(tmp_path / "mask.h5", "w") as f:
        f["mask"] = full[[m2, m3]]
    det_h5 = DetObject.from_dark_file("dssc", dark_file, user_mask=str(tmp_path / "mask.h5"), mask_asic_edges=False)
    assert np.array_equal(det_h5.masks["user"], full[[m2, m3]])
    assert det_h5.masks["edges"].all() and (det_h5.mask.sum() > det.mask.sum())
    with pytest.raises(ConfigError, match="shape"):
        DetObject.from_dark_file("dssc", dark_file, user_mask=np.ones((3, 128, 512), bool))
    with pytest.raises(ConfigError, match="does not exist"):
        DetObject.from_dark_file("dssc", dark_file, user_mask=tmp_path / "nope.npy")


# ---------------------------------------------------------------------------- description
def test_config_arrays_params_and_subset(dark_file, det_adu):
    det = DetObject.from_dark_file("dssc", dark_file, modules=[3], gain=15.0, common_mode="asic_row_median",
                                   common_mode_max_adu=20.0)
    assert det.modules == (3,) and det.units == "photon"
    np.testing.assert_array_equal(det.pedestal[0], det_adu.pedestal[det_adu.module_index(3)])
    np.testing.assert_allclose(det.noise_in_units, det_adu.noise[1:].mean(axis=1) / 15.0, rtol=1e-6)
    arrays = det.config_arrays()
    for key in ("pedestal", "noise", "gain", "x", "y", "z", "mask", "status_mask", "mask_status",
                "mask_edges", "mask_user"):
        assert key in arrays, key
    assert arrays["pedestal"].shape == (1, len(det.cell_ids), 128, 512) and arrays["pedestal"].flags.c_contiguous
    assert arrays["gain"].shape == (1, 128, 512) and (arrays["gain"] == 15.0).all()
    params = det.params()
    json.dumps(params)  # plain values, storable as attributes
    assert params["common_mode"] == "asic_row_median" and params["common_mode_max_adu"] == 20.0
    assert params["gain"] == 15.0 and params["dark_file"] == str(dark_file) and params["dark_run"] == DARK_RUN
    same = DetObject.from_config("dssc", {"modules": [3], "gain": 15.0, "common_mode": "asic_row_median",
                                          "common_mode_max": 20.0}, dark_file)
    assert same.params() == params
    with pytest.raises(ConfigError, match="common_mode"):
        DetObject.from_dark_file("dssc", dark_file, common_mode="median")


def test_gain_map_masks_bad_gain(dark_file, det_adu, raw):
    gain = np.full((2, 128, 512), 10.0, np.float32)
    gain[0, 20, 20] = 0.0
    gain[1, 3:5, 30] = 20.0
    det = DetObject.from_dark_file("dssc", dark_file, gain=gain)
    assert not det.mask[0, 20, 20] and not det.masks["gain"][0, 20, 20]
    adu, photons = det_adu.calibrate(raw), det.calibrate(raw)
    np.testing.assert_allclose(photons.data[:, 1, 3, 30], adu.data[:, 1, 3, 30] / 20.0, rtol=1e-6)
    np.testing.assert_allclose(photons.data[:, 0, 50, 50], adu.data[:, 0, 50, 50] / 10.0, rtol=1e-6)
    assert det.params()["gain"] == "map"


def test_pedestal_read_cell_major_and_kept_without_a_copy(dark_file):
    """A dark file's pedestal is read into the cell-major layout calibration uses, and the detector
    keeps that very memory (a copy would double the largest array of a run's set-up)."""
    from smalldata.calib.darkfile import read_dark_file

    dark = read_dark_file(dark_file, [2, 3])
    assert dark.pedestal.transpose(1, 0, 2, 3).flags.c_contiguous
    with h5py.File(dark_file, "r") as f:
        stored = f["pedestal"][()][[list(f["modules"][()]).index(m) for m in (2, 3)]]
    np.testing.assert_array_equal(dark.pedestal, stored)
    det = DetObject.from_constants("dssc", dark)
    assert np.shares_memory(det.pedestal, dark.pedestal)


def test_constants_without_noise(dark_file, det_adu, raw):
    """Read without the noise, a detector calibrates and masks exactly as with it; asking for the
    noise, or for common mode that takes its threshold from it, fails in one line that says how."""
    det = DetObject.from_dark_file("dssc", dark_file, modules=[2, 3], noise=False)
    full = DetObject.from_dark_file("dssc", dark_file, modules=[2, 3])
    np.testing.assert_array_equal(det.pedestal, full.pedestal)
    np.testing.assert_array_equal(det.mask, full.mask)
    got, expected = det.calibrate(raw), full.calibrate(raw)
    np.testing.assert_array_equal(got.data, expected.data)
    np.testing.assert_array_equal(got.valid, expected.valid)
    with pytest.raises(CalibrationError, match="noise was not loaded"):
        det.noise
    with pytest.raises(CalibrationError, match="needs the dark noise"):
        DetObject.from_dark_file("dssc", dark_file, modules=[3], noise=False, common_mode="asic_row_median")
    fixed = DetObject.from_dark_file("dssc", dark_file, modules=[3], noise=False, common_mode="asic_row_median",
                                     common_mode_max_adu=20.0)
    assert fixed.common_mode == "asic_row_median"


def test_module_constants_reuse_a_released_pedestal_only(dark_file):
    """AvImage's per-module detectors read into a pedestal array given back (``make.release(det)``),
    never into one still in use, and hold the file's numbers either way."""
    import weakref

    from smalldata.sums.average import module_detectors

    make = module_detectors(dark_file, lambda mods, dark: DetObject.from_constants("dssc", dark))
    with h5py.File(dark_file, "r") as f:
        stored = {int(m): f["pedestal"][i] for i, m in enumerate(f["modules"][()])}
    first = make((2,))
    held = make((3,))  # the first is still in use: another array
    assert not np.shares_memory(held.pedestal, first.pedestal)
    np.testing.assert_array_equal(first.pedestal[0], stored[2])
    np.testing.assert_array_equal(held.pedestal[0], stored[3])
    last = weakref.ref(held.pedestal.base)
    make.release(held)
    del held
    again = make((2,))  # given back: its array is read into
    assert again.pedestal.base is last()
    np.testing.assert_array_equal(again.pedestal[0], stored[2])
    np.testing.assert_array_equal(first.pedestal[0], stored[2])
