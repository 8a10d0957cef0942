"""The event-loop function ``viking`` on small simulated Viking runs: photoelectrons against a plain
numpy sum and the planted beam, the same spectrum as the offline pipeline (VikingSpectra), the
calibrated axis, settings taken from the run, and one-line errors for bad settings."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest

import extra_data

from helpers import camera_frames

from smalldata.cameras import characterise_dark
from smalldata.cameras.reading import read_frames, read_settings
from smalldata.config.functions import build_function
from smalldata.errors import ConfigError
from smalldata.funcs.viking import BaselineFit, VikingSpectrum
from smalldata.plugin.frames import Frames, read_only
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_viking_run
from smalldata.spectro.pipelines import VikingSpectra
from smalldata.spectro.viking import remove_baseline
from smalldata.testing import check_function

PROPOSAL, DATA, DARK = 2937, 740, 741
SHAPE = (32, 256)
#: gain 2 in high-capacity mode: 9.0 photoelectrons per count (smalldata.spectro.viking.PE_PER_COUNT)
SETTINGS = {"preampGain": 1, "HighCapacity": 1}


def camera_det(dark, settings, units="ADU"):
    """Stand-in for the Newton camera detector object handed to setFromDet."""
    ny, nx = dark.shape
    yy, xx = np.meshgrid(np.arange(ny) * 13.5e-6, np.arange(nx) * 13.5e-6, indexing="ij")
    return SimpleNamespace(name="viking", modules=(0,), mask=dark.mask[None], units=units, x=xx[None],
                           y=yy[None], z=np.zeros((1, ny, nx)),
                           params=lambda: {"camera": "newton", "settings": dict(settings)})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("funcs_viking")
    sim = CameraSim(camera="newton", shape=SHAPE, n_trains=10, settings=SETTINGS)
    truth = simulate_viking_run(root, PROPOSAL, DATA, sim, "reference")
    simulate_viking_run(root, PROPOSAL, DARK, sim, "dark")
    data_run = extra_data.RunDirectory(run_path(root, PROPOSAL, DATA))
    dark_run = extra_data.RunDirectory(run_path(root, PROPOSAL, DARK))
    dark = characterise_dark(read_frames(dark_run, sim.preset)[1], "newton", read_settings(dark_run, sim.preset))
    raw = read_frames(data_run, sim.preset)[1]
    return SimpleNamespace(truth=truth, dark=dark, raw=raw, settings=read_settings(data_run, sim.preset),
                           frames=camera_frames(raw, dark, sim.preset.saturation))


def signal_range_px(truth, widths=3.5):
    """Columns of the planted beam: its centre -+ ``widths`` beam sigmas (the truth's range is 5 sigmas)."""
    lo5, hi5 = (float(v) for v in truth["signal_range_px"])
    centre, sigma = 0.5 * (lo5 + hi5), (hi5 - lo5) / 10
    return centre - widths * sigma, centre + widths * sigma


def test_spectrum_against_numpy_pipeline_and_truth(run):
    truth = run.truth
    band = [int(v) for v in truth["band_rows"]]
    lo, hi = signal_range_px(truth)
    func = VikingSpectrum(signal_range=[lo, hi], baseline_degree=2, rows=band)
    out = check_function(func, run.frames, det=camera_det(run.dark, run.settings))
    assert func.pe_per_count == 9.0  # from the run's settings: preampGain 1, HighCapacity 1
    spec, nobl = out["viking_spectrum"], out["viking_spectrum_nobl"]
    # a plain numpy sum: good pixels of the band, raw minus dark mean, times 9 photoelectrons per count
    good = run.dark.mask[band[0]:band[1]]
    plain = ((run.raw[:, band[0]:band[1]].astype(np.float64) - run.dark.mean[band[0]:band[1]]) * good).sum(axis=1)
    np.testing.assert_allclose(spec, 9.0 * plain, rtol=0, atol=1e-2)
    # the offline pipeline on the raw frames (float64 dark subtraction, ours float32: 1e-2 photoelectrons)
    ref = VikingSpectra(run.dark, SETTINGS["preampGain"], SETTINGS["HighCapacity"], (lo, hi), baseline_degree=2,
                        rows=tuple(band)).process(run.raw)
    np.testing.assert_allclose(spec, ref["spectrum"], rtol=0, atol=1e-2)
    np.testing.assert_allclose(nobl, ref["spectrum_nobl"], rtol=0, atol=1e-2)
    # planted: the beam (each train's factor times the beam profile) once the baseline is gone, within
    # the read noise of a column (2 ADU x sqrt(16 rows), dark subtracted) x 9 photoelectrons per count
    beam = truth["train_factor"][:, None] * truth["beam_pe"][None]
    sigma = 2.0 * np.sqrt(16 * (1 + 1 / 10)) * 9.0
    assert np.std(nobl - beam) < 1.3 * sigma
    # total: the planted beam in the range, within 4 x its noise, the column noise carried through the
    # baseline fit (remove_baseline of unit spectra gives each column's weight in the total)
    x = np.arange(SHAPE[1], dtype=np.float64)
    inside = (x >= lo) & (x <= hi)
    weight = remove_baseline(x, np.eye(SHAPE[1]), (lo, hi), 2)[0][:, inside].sum(axis=1)
    sigma_total = sigma * np.linalg.norm(weight)
    assert sigma_total < 0.01 * beam.sum(axis=1).min()
    assert np.all(np.abs(out["viking_total"] - beam[:, inside].sum(axis=1)) < 4 * sigma_total)
    np.testing.assert_allclose(out["viking_total"], nobl[:, inside].sum(axis=1), rtol=1e-12)
    assert func.config_arrays().keys() == {"pixel"}
    assert func.output_units()["spectrum_nobl"] == "photoelectron"


def test_calibrated_axis_and_signal_range_in_ev(run):
    truth = run.truth
    band = [int(v) for v in truth["band_rows"]]
    cal = [float(v) for v in truth["calibration"]]
    energy = np.asarray(truth["energy"])
    lo_px, hi_px = signal_range_px(truth)
    # the same columns named in eV: the energies half-way between the neighbouring columns of the range ends
    e_lo = np.polynomial.polynomial.polyval(np.ceil(lo_px) - 0.5, cal)
    e_hi = np.polynomial.polynomial.polyval(np.floor(hi_px) + 0.5, cal)
    by_ev = VikingSpectrum(signal_range=[e_lo, e_hi], baseline_degree=2, rows=band, calibration=cal)
    by_px = VikingSpectrum(name="px", signal_range=[lo_px, hi_px], baseline_degree=2, rows=band)
    out = check_function(by_ev, run.frames, det=camera_det(run.dark, run.settings))
    ref = check_function(by_px, run.frames, det=camera_det(run.dark, run.settings))
    np.testing.assert_array_equal(out["viking_spectrum_nobl"], ref["px_spectrum_nobl"])
    np.testing.assert_array_equal(out["viking_total"], ref["px_total"])
    arrays = by_ev.config_arrays()
    np.testing.assert_allclose(arrays["energy"], energy, rtol=1e-12)
    np.testing.assert_array_equal(arrays["pixel"], np.arange(SHAPE[1]))
    assert by_ev.config_units()["energy"] == "eV"


def test_baseline_fit_is_remove_baseline_frame_by_frame():
    rng = np.random.default_rng(5)
    x = np.arange(300.0)
    spectra = rng.normal(0, 3, (7, 300)) + np.polynomial.polynomial.polyval(x, [50.0, -0.2, 4e-4, 1e-6])[None]
    outside = (x < 100) | (x > 180)
    fit = BaselineFit(x, outside, 3)
    want, base = remove_baseline(x, spectra, (100, 180), 3)
    np.testing.assert_allclose(fit(spectra), base, rtol=0, atol=1e-9)
    for k in range(len(spectra)):  # one spectrum alone gives the same bits
        np.testing.assert_array_equal(fit(spectra[k:k + 1])[0], fit(spectra)[k])


def test_settings_given_and_missing(run, caplog):
    truth = run.truth
    lo, hi = (float(v) for v in truth["signal_range_px"])
    # given in the config: used (a warning says the run recorded another value)
    func = VikingSpectrum(signal_range=[lo, hi], preamp_gain=2, high_capacity=0)
    with caplog.at_level(logging.WARNING, logger="smalldata.funcs.viking"):
        func.setup(camera_det(run.dark, run.settings))
    assert func.pe_per_count == 0.97
    assert "preamp_gain=2 given in the config, the run recorded preampGain=1" in caplog.text
    # neither in the config nor recorded: one line naming the key and the fix
    func = VikingSpectrum(signal_range=[lo, hi])
    func.config_path = "detectors.viking.functions[0]"
    with pytest.raises(ConfigError) as err:
        func.setup(camera_det(run.dark, {}))
    assert str(err.value) == ("config detectors.viking.functions[0].preamp_gain: the Newton's preampGain setting is "
                              "not among detector 'viking''s recorded camera settings ([]); give preamp_gain in the "
                              "config")
    func = VikingSpectrum(signal_range=[lo, hi], preamp_gain=0)
    with pytest.raises(ConfigError, match=r"viking\.high_capacity: the Newton's HighCapacity setting"):
        func.setup(camera_det(run.dark, {"preampGain": 0}))


def test_one_line_errors(run):
    det = camera_det(run.dark, run.settings)
    # a calibration that turns back within the camera's columns
    func = VikingSpectrum(signal_range=[870.0, 890.0], calibration=[860.0, 0.2, -1e-3])
    func.config_path = "detectors.viking.functions[0]"
    with pytest.raises(ConfigError, match=r"^config detectors\.viking\.functions\[0\]\.calibration: calibration: "
                                          r"coefficients \[860\.0, 0\.2, -0\.001\] are not monotonic on pixels "
                                          r"0\.\.255 \(turns at pixel 100\.0\)"):
        func.setup(det)
    with pytest.raises(ConfigError, match="holds no column"):
        VikingSpectrum(signal_range=[1000.0, 2000.0]).setup(det)
    with pytest.raises(ConfigError, match="only 0 columns lie outside"):
        VikingSpectrum(signal_range=[-1.0, 300.0]).setup(det)
    with pytest.raises(ConfigError, match="remove its gain"):
        VikingSpectrum(signal_range=[10.0, 20.0]).setup(camera_det(run.dark, run.settings, units="photon"))
    with pytest.raises(ConfigError, match=r"rows: \[0, 40\] goes beyond the camera's 32 rows"):
        VikingSpectrum(signal_range=[10.0, 20.0], rows=[0, 40]).setup(det)
    with pytest.raises(ConfigError, match=r"^config detectors\.v\.functions\[0\]\.preamp_gain: Newton preampGain 3"):
        build_function(dict(type="viking", signal_range=[10.0, 20.0], preamp_gain=3), "detectors.v.functions[0]")
    with pytest.raises(ConfigError, match=r"^config detectors\.v\.functions\[0\]\.signal_range: None is not"):
        build_function(dict(type="viking"), "detectors.v.functions[0]")
    built = build_function(dict(type="viking", signal_range=[10.0, 20.0]), "detectors.v.functions[0]")
    assert isinstance(built, VikingSpectrum) and built.name == "viking"


def test_producer_set_up_check_on_synthetic_frames(run):
    """The producer's dry run (synthetic frames shaped by the detector) learns the outputs."""
    from smalldata.plugin.contract import check_function as check_setup, dry_run_batches

    det = camera_det(run.dark, run.settings)
    func = VikingSpectrum(signal_range=[100.0, 150.0], baseline_degree=3)
    func.setup(det)
    layout = check_setup(func, dry_run_batches(det, (0,), None))
    assert {k: v[1] for k, v in layout.items()} == {"viking_spectrum": ("<f8", (SHAPE[1],)),
                                                    "viking_spectrum_nobl": ("<f8", (SHAPE[1],)),
                                                    "viking_total": ("<f8", ())}


def test_invalid_pixels_count_as_zero(run):
    """A pixel not valid in a frame adds nothing to its column: the plain sum without it."""
    frames = run.frames
    func = VikingSpectrum(signal_range=[100.0, 150.0], rows=[4, 28])
    func.setup(camera_det(run.dark, run.settings))
    valid = frames.valid.copy()
    valid[3, 0, 10, 40:60] = False
    out = func.run(read_only(Frames(data=frames.data, valid=valid, units="ADU", train_ids=frames.train_ids,
                                    pulse_ids=frames.pulse_ids, cell_ids=frames.cell_ids, modules=(0,))))
    plain = np.where(valid[:, 0], frames.data[:, 0], 0).astype(np.float64)[:, 4:28].sum(axis=1) * 9.0
    np.testing.assert_allclose(out["viking_spectrum"], plain, rtol=1e-12, atol=1e-9)
    full = func.run(frames)["viking_spectrum"]
    np.testing.assert_allclose(full[3, 40:60] - out["viking_spectrum"][3, 40:60],
                               9.0 * frames.data[3, 0, 10, 40:60], rtol=1e-5, atol=1e-6)
