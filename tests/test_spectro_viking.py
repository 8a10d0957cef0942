"""Viking (Newton camera) on simulated runs: photoelectrons per count, spectra, baseline removal,
energy calibration from monochromator runs and XAS, against the planted truth."""
import numpy as np
import pytest

import extra_data

from smalldata.cameras import characterise_dark, get_preset
from smalldata.cameras.reading import read_frames, read_settings
from smalldata.errors import CalibrationError, ConfigError, DataError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import MONO_DEVICE, MONO_KEY, CameraSim, simulate_viking_run
from smalldata.spectro.calibration import EnergyCalibration
from smalldata.spectro.viking import calibrate_from_mono, photoelectrons_per_count, remove_baseline, spectrum
from smalldata.spectro.xas import edge_position, edge_step, xas

PROPOSAL = 2937
DARK, REF, SAMPLE = 720, 721, 722
MONO = {730: 865.0, 731: 872.0, 732: 880.0, 733: 888.0, 734: 896.0}
SHAPE = (32, 512)
SETTINGS = {"preampGain": 2, "HighCapacity": 1}


@pytest.fixture(scope="module")
def viking(tmp_path_factory):
    root = tmp_path_factory.mktemp("viking")
    sim = dict(camera="newton", shape=SHAPE, n_trains=40, settings=dict(SETTINGS))
    truths = {DARK: simulate_viking_run(root, PROPOSAL, DARK, CameraSim(**sim), "dark"),
              REF: simulate_viking_run(root, PROPOSAL, REF, CameraSim(**sim), "reference"),
              SAMPLE: simulate_viking_run(root, PROPOSAL, SAMPLE, CameraSim(**sim), "sample")}
    for run, energy in MONO.items():
        truths[run] = simulate_viking_run(root, PROPOSAL, run, CameraSim(**dict(sim, n_trains=10)), "mono",
                                          mono_energy=energy)
    preset = get_preset("newton").with_shape(SHAPE)

    def open_run(run):
        return extra_data.RunDirectory(run_path(root, PROPOSAL, run))
    dark = characterise_dark(read_frames(open_run(DARK), preset)[1], "newton", read_settings(open_run(DARK), preset))
    return dict(root=root, truths=truths, preset=preset, open_run=open_run, dark=dark)


def _spectra(viking, run):
    r = viking["open_run"](run)
    settings = read_settings(r, viking["preset"])
    pe = photoelectrons_per_count(settings["preampGain"], settings["HighCapacity"])
    return spectrum(read_frames(r, viking["preset"])[1], viking["dark"].mean, pe)


@pytest.mark.parametrize("gain, mode, want", [(0, 0, 4.0), (1, 0, 2.05), (2, 0, 0.97),
                                              (0, 1, 17.9), (1, 1, 9.0), (2, 1, 4.5)])
def test_photoelectrons_per_count_table(gain, mode, want):
    assert photoelectrons_per_count(gain, mode) == want


@pytest.mark.parametrize("gain, mode", [(3, 0), (1.5, 0), (0, 2)])
def test_unknown_camera_setting_refused(gain, mode):
    with pytest.raises(CalibrationError, match="expected") as err:
        photoelectrons_per_count(gain, mode)
    assert "\n" not in str(err.value)


def test_settings_read_from_run(viking):
    assert read_settings(viking["open_run"](REF), viking["preset"]) == {k: float(v) for k, v in SETTINGS.items()}


def test_spectrum_in_photoelectrons_and_baseline(viking):
    truth = viking["truths"][REF]
    spec = _spectra(viking, REF)
    want = truth["train_factor"][:, None] * truth["beam_pe"][None] + truth["baseline_pe"][None]
    # noise per column: 16 band rows and 32 rows of dark, 2 ADU each, 4.5 photoelectrons per count
    sigma = 2.0 * np.sqrt(32 * (1 + 1 / 40)) * float(truth["pe_per_count"])
    assert np.std(spec - want) < 1.3 * sigma
    assert abs(np.mean(spec - want)) < 0.1 * sigma
    x = np.arange(SHAPE[1])
    corrected, base = remove_baseline(x, spec, tuple(truth["signal_range_px"]), degree=2)
    np.testing.assert_allclose(base.mean(axis=0), truth["baseline_pe"], atol=0.5 * sigma)
    beam = truth["train_factor"][:, None] * truth["beam_pe"][None]
    assert np.std(corrected - beam) < 1.3 * sigma


def test_baseline_refuses_a_signal_range_covering_everything():
    with pytest.raises(DataError, match="outside the signal range"):
        remove_baseline(np.arange(10.0), np.ones(10), (-1, 20), degree=2)


def test_energy_calibration_from_mono_runs(viking):
    truths = viking["truths"]
    x = np.arange(SHAPE[1])
    means = []
    for run in MONO:
        spec = _spectra(viking, run)
        means.append(remove_baseline(x, spec.mean(axis=0), tuple(truths[run]["signal_range_px"]), degree=2)[0])
    cal, peaks = calibrate_from_mono(means, list(MONO.values()), degree=2)
    np.testing.assert_allclose(peaks, [truths[r]["peak_px"] for r in MONO], atol=0.05)
    planted = EnergyCalibration(tuple(truths[REF]["calibration"]), (0, SHAPE[1] - 1))
    # coefficients: 860 eV, 0.08 eV/px, 1.2e-5 eV/px^2
    for got, want, rel in zip(cal.coefficients, planted.coefficients, (1e-4, 2e-3, 0.05)):
        assert got == pytest.approx(want, rel=rel)
    np.testing.assert_allclose(cal(x), planted(x), atol=0.01)


def test_mono_energy_recorded(viking):
    r = viking["open_run"](731)
    assert r[MONO_DEVICE, f"{MONO_KEY}.value"].as_single_value() == MONO[731]


def test_xas_recovers_planted_edge(viking):
    truths = viking["truths"]
    x = np.arange(SHAPE[1])
    rng = tuple(truths[REF]["signal_range_px"])
    it = remove_baseline(x, _spectra(viking, SAMPLE), rng, degree=2)[0]
    i0 = remove_baseline(x, _spectra(viking, REF), rng, degree=2)[0]
    res = xas(it, i0, thickness=1.0)
    energy = truths[REF]["energy"]
    planted = truths[SAMPLE]["absorbance"]
    core = np.abs(x - truths[REF]["peak_px"]) < 2 * SHAPE[1] / 12  # where the beam is bright
    # the planted absorbance within the propagated errors: the trains' intensity jitter (10%) moves the
    # whole curve alike (within its standard error), the rest scatters point by point (chi^2 about 1)
    resid = (res.absorption - planted)[core]
    offset = resid.mean()
    assert abs(offset) < 4 * res.stderr[core].mean()
    chi2 = np.mean(((resid - offset) / res.stderr[core]) ** 2)
    assert chi2 < 1.5
    assert np.all(res.std[core] > res.stderr[core])
    # independent: the standard error of -log(It/I0) from 200 resamplings of the trains (bootstrap)
    gen = np.random.default_rng(0)
    with np.errstate(invalid="ignore"):  # outside the beam the mean spectra can be <= 0
        boot = [-np.log(it[gen.integers(0, len(it), len(it))].mean(axis=0) / i0[gen.integers(0, len(i0), len(i0))].mean(axis=0))
                for _ in range(200)]
    np.testing.assert_allclose(np.std(boot, axis=0)[core], res.stderr[core], rtol=0.25)
    e_core, a_core = energy[core], res.absorption[core]
    assert edge_position(e_core, a_core) == pytest.approx(float(truths[SAMPLE]["edge_energy"]), abs=0.1)
    step = edge_step(e_core, a_core, float(truths[SAMPLE]["edge_energy"]), gap=2.0, width=1.5)
    assert step == pytest.approx(float(truths[SAMPLE]["edge_step"]), abs=0.03)


def test_xas_bad_input():
    with pytest.raises(ConfigError, match="thickness"):
        xas(np.ones((3, 4)), np.ones((3, 4)), thickness=0.0)
    with pytest.raises(DataError, match="same energy points"):
        xas(np.ones((3, 4)), np.ones((3, 5)))
