"""The event-loop function ``hrixs`` on a small simulated hRIXS run: planted photons and line
energies recovered, the same spectrum as the offline pipeline (HRIXSSpectra) on the same frames, a
numpy histogram of the planted photon energies, and one-line errors for bad settings."""
from types import SimpleNamespace

import numpy as np
import pytest

import extra_data

from helpers import camera_frames

from smalldata.cameras import characterise_dark
from smalldata.cameras.reading import read_frames
from smalldata.config.functions import build_function
from smalldata.errors import ConfigError
from smalldata.funcs.hrixs import HRIXSSpectrum
from smalldata.plugin.frames import Frames, read_only
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run
from smalldata.spectro.pipelines import HRIXSSpectra
from smalldata.testing import check_function

PROPOSAL, DATA, DARK = 2937, 730, 731
SHAPE = (120, 240)
LINES = (927.0, 928.5, 930.0)
#: 0.5 eV bins centred on the lines: a photon's bin is its line's (line width 0.3 px x 0.05 eV/px)
BINS = (925.25, 931.75, 0.5)
#: 0.02 eV bins to find the line energies
FINE_BINS = (925.5, 931.5, 0.02)


def camera_det(dark, units="ADU"):
    """Stand-in for the camera detector object handed to setFromDet."""
    ny, nx = dark.shape
    yy, xx = np.meshgrid(np.arange(ny) * 13.5e-6, np.arange(nx) * 13.5e-6, indexing="ij")
    return SimpleNamespace(name="hrixs", modules=(0,), mask=dark.mask[None], noise=dark.noise[None, None],
                           units=units, x=xx[None], y=yy[None], z=np.zeros((1, ny, nx)),
                           params=lambda: {"camera": "hrixs", "settings": {}})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("funcs_hrixs")
    sim = CameraSim(camera="hrixs", shape=SHAPE, n_trains=8)
    truth = simulate_hrixs_run(root, PROPOSAL, DATA, sim, "data", line_energies=LINES, photons_per_train=50)
    simulate_hrixs_run(root, PROPOSAL, DARK, sim, "dark")

    def raw(r):
        return read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, r)), sim.preset)[1]
    dark = characterise_dark(raw(DARK), "hrixs")
    data = raw(DATA)
    return SimpleNamespace(truth=truth, dark=dark, raw=data, frames=camera_frames(data, dark, sim.preset.saturation))


def calibration(truth):
    return dict(curvature=[float(v) for v in truth["curvature"]], energy_slope=float(truth["energy_slope"]),
                energy_intercept=float(truth["energy_intercept"]), energy_bins=BINS)


def planted_spectrum(truth, edges, n):
    """Photons per train and bin from the planted photon energies: np.histogram per train."""
    return np.stack([np.histogram(truth["hit_energy"][truth["hit_train"] == t], edges,
                                  weights=truth["hit_photons"][truth["hit_train"] == t])[0] for t in range(n)])


def test_centroid_spectrum_against_truth_and_pipeline(run):
    truth, n = run.truth, len(run.raw)
    adu = float(truth["adu_per_photon"])
    func = HRIXSSpectrum(threshold_adu=0.5 * adu, double_threshold_adu=1.5 * adu, **calibration(truth))
    out = check_function(func, run.frames, det=camera_det(run.dark))
    spec = out["hrixs_spectrum"]
    assert spec.shape == (n, len(func.edges) - 1)
    # the offline pipeline on the same raw frames: the same numbers
    ref = HRIXSSpectra(run.dark, threshold_adu=0.5 * adu, double_threshold_adu=1.5 * adu,
                       **calibration(truth)).process(run.raw)
    np.testing.assert_array_equal(spec, ref["spectrum"])
    np.testing.assert_array_equal(out["hrixs_n_photons"], ref["photons"])
    np.testing.assert_array_equal(out["hrixs_n_single"] + out["hrixs_n_double"], ref["hits"])
    # planted: every hit is isolated (min_distance); >= 99 % of the single and double hits found per train
    single = np.bincount(truth["hit_train"][truth["hit_photons"] == 1], minlength=n)
    double = np.bincount(truth["hit_train"][truth["hit_photons"] == 2], minlength=n)
    assert single.sum() > 300
    assert np.abs(out["hrixs_n_single"] - single).sum() <= 0.01 * single.sum()
    assert np.abs(out["hrixs_n_double"] - double).sum() <= max(1, 0.01 * double.sum())
    np.testing.assert_array_equal(out["hrixs_n_photons"], spec.sum(axis=1))
    # against np.histogram of the planted energies: at most 1 % of the photons in another bin
    want = planted_spectrum(truth, func.edges, n)
    assert np.abs(spec - want).sum() <= 0.01 * want.sum()
    assert func.output_units()["spectrum"] == "photon"
    assert func.config_units()["energy"] == "eV"
    np.testing.assert_allclose(func.config_arrays()["energy"], np.arange(925.5, 931.6, 0.5))


def test_line_energies_from_fine_bins(run):
    truth = run.truth
    adu = float(truth["adu_per_photon"])
    func = HRIXSSpectrum(threshold_adu=0.5 * adu, double_threshold_adu=1.5 * adu,
                         **dict(calibration(truth), energy_bins=FINE_BINS))
    out = check_function(func, run.frames, det=camera_det(run.dark))
    # each line's mean energy from the binned spectrum within half a bin (0.01 eV) of the planted one
    centres = func.config_arrays()["energy"]
    total = out["hrixs_spectrum"].sum(axis=0)
    for line in LINES:
        near = np.abs(centres - line) < 0.2
        assert total[near].sum() > 100
        assert np.dot(total[near], centres[near]) / total[near].sum() == pytest.approx(line, abs=0.01)


def test_threshold_in_noise_sigmas_reads_the_dark_noise(run):
    truth = run.truth
    func = HRIXSSpectrum(threshold_sigma=8.0, double_threshold_adu=1.5 * float(truth["adu_per_photon"]),
                         **calibration(truth))
    assert func.needs_noise()
    assert not HRIXSSpectrum(threshold_adu=75.0, **calibration(truth)).needs_noise()
    out = check_function(func, run.frames, det=camera_det(run.dark))
    assert func.threshold == pytest.approx(8.0 * 2.0 * np.median(run.dark.noise[run.dark.mask]))
    ref = HRIXSSpectra(run.dark, threshold_sigma=8.0, double_threshold_adu=1.5 * float(truth["adu_per_photon"]),
                       **calibration(truth)).process(run.raw)
    np.testing.assert_array_equal(out["hrixs_spectrum"], ref["spectrum"])


def test_integrated_spectrum(run):
    truth, frames = run.truth, run.frames
    # bins covering every pixel's energy interval: each frame's good pixels all land in the spectrum
    settings = dict(calibration(truth), energy_bins=(924.0, 932.0, 0.01))
    func = HRIXSSpectrum(name="integ", method="integrate", **settings)
    out = check_function(func, frames, det=camera_det(run.dark))
    spec = out["integ_spectrum"]
    ref = HRIXSSpectra(run.dark, method="integrate", **settings).process(run.raw)
    np.testing.assert_array_equal(spec, ref["spectrum"])
    good = np.where(frames.valid, frames.data, 0).astype(np.float64).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(spec.sum(axis=1), good, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(out["integ_total"], spec.sum(axis=1), rtol=1e-12)
    # each line: centre of mass of the summed spectrum within 0.01 eV (noise spread over many bins)
    centres = func.config_arrays()["energy"]
    total = spec.sum(axis=0)
    for line in LINES:
        near = np.abs(centres - line) < 0.2
        assert np.dot(total[near], centres[near]) / total[near].sum() == pytest.approx(line, abs=0.01)
    assert func.output_units() == {"spectrum": "ADU", "total": "ADU"}


def test_one_line_errors(run):
    truth = run.truth
    # a calibration with no slope maps every row to one energy: refused at set-up, naming the keys
    flat = HRIXSSpectrum(threshold_adu=75.0, **dict(calibration(truth), energy_slope=0.0))
    flat.config_path = "detectors.hrixs.functions[0]"
    with pytest.raises(ConfigError) as err:
        flat.setup(camera_det(run.dark))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("config detectors.hrixs.functions[0].energy_slope: energy_slope 0, energy_intercept")
    assert "not monotonic on pixels -0.5..119.5" in message
    # both thresholds, through the config's function builder (the built-in short name)
    spec = dict(type="hrixs", threshold_adu=75.0, threshold_sigma=5.0, **calibration(truth))
    with pytest.raises(ConfigError, match=r"^config detectors\.hrixs\.functions\[0\]\.threshold_adu: give the hit "
                                          r"threshold either in ADU \(threshold_adu\) or in noise sigmas"):
        build_function(spec, "detectors.hrixs.functions[0]")
    with pytest.raises(ConfigError, match="either in ADU"):
        HRIXSSpectrum(**calibration(truth))
    with pytest.raises(ConfigError, match="apply to method 'centroid' only"):
        HRIXSSpectrum(method="integrate", threshold_adu=75.0, **calibration(truth))
    with pytest.raises(ConfigError, match="energy_bins.*at least one bin"):
        HRIXSSpectrum(threshold_adu=75.0, **dict(calibration(truth), energy_bins=(930.0, 930.5, 1.0)))
    with pytest.raises(ConfigError, match="energy_slope: missing"):
        HRIXSSpectrum(threshold_adu=75.0)
    # centroiding thresholds are in ADU: a detector calibrated to photons is refused
    with pytest.raises(ConfigError, match="remove its gain, or use method 'integrate'"):
        HRIXSSpectrum(threshold_adu=75.0, **calibration(truth)).setup(camera_det(run.dark, units="photon"))
    built = build_function(dict(type="hrixs", threshold_adu=75.0, **calibration(truth)), "detectors.h.functions[0]")
    assert isinstance(built, HRIXSSpectrum) and built.name == "hrixs"


def test_producer_set_up_check_on_synthetic_frames(run):
    """The producer's dry run (synthetic frames shaped by the detector) learns the declared outputs."""
    from smalldata.plugin.contract import check_function as check_setup, dry_run_batches

    truth, det = run.truth, camera_det(run.dark)
    for method, keys in (("centroid", {"spectrum", "n_single", "n_double", "n_photons"}),
                         ("integrate", {"spectrum", "total"})):
        func = HRIXSSpectrum(method=method, threshold_adu=75.0 if method == "centroid" else None,
                             **calibration(truth))
        func.setup(det)
        layout = check_setup(func, dry_run_batches(det, (0,), None))
        assert set(layout) == {f"hrixs_{k}" for k in keys}
        assert layout["hrixs_spectrum"][1] == ("<f8", (len(func.edges) - 1,))


def test_invalid_pixels_count_as_zero(run):
    """Pixels not valid in a frame (saturated, bad) count as 0: the hits on them are lost, the rest stay."""
    truth, frames = run.truth, run.frames
    adu = float(truth["adu_per_photon"])
    func = HRIXSSpectrum(threshold_adu=0.5 * adu, double_threshold_adu=1.5 * adu, **calibration(truth))
    func.setup(camera_det(run.dark))
    valid = frames.valid.copy()
    valid[1::2, 0, :, :SHAPE[1] // 2] = False  # the left half of every other frame
    out = func.run(read_only(Frames(data=frames.data, valid=valid, units="ADU", train_ids=frames.train_ids,
                                    pulse_ids=frames.pulse_ids, cell_ids=frames.cell_ids, modules=(0,))))
    full = func.run(frames)
    np.testing.assert_array_equal(out["hrixs_spectrum"][0::2], full["hrixs_spectrum"][0::2])
    # planted photons of the odd frames on the right half, away from the cut by the 4x4 neighbourhood
    n = len(frames)
    right = truth["hit_x"] >= SHAPE[1] // 2 + 2
    border = np.abs(truth["hit_x"] - SHAPE[1] // 2) < 2
    kept = np.bincount(truth["hit_train"][right], weights=truth["hit_photons"][right], minlength=n)
    unsure = np.bincount(truth["hit_train"][border], weights=truth["hit_photons"][border], minlength=n)
    found = out["hrixs_n_photons"][1::2]
    assert np.all(found >= kept[1::2] - 0.01 * kept.sum()) and np.all(found <= (kept + unsure)[1::2] + 1)
    assert found.sum() < 0.6 * full["hrixs_n_photons"][1::2].sum()


def test_refuses_a_detector_that_is_not_a_camera(run):
    func = HRIXSSpectrum(threshold_adu=75.0, **calibration(run.truth))
    det = SimpleNamespace(name="dssc", modules=(0, 1), mask=np.ones((2, 128, 512), bool), units="ADU")
    with pytest.raises(ConfigError, match="needs a camera detector .* detector 'dssc' has a mask of shape"):
        func.setup(det)
