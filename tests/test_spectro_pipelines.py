"""The per-batch spectrometer analyses on simulated runs: raw frames in, planted spectra out, and
the same per-frame results for any split of the frames into batches."""
import numpy as np
import pytest

import extra_data

from smalldata.cameras import characterise_dark
from smalldata.cameras.reading import read_frames, read_settings
from smalldata.errors import CalibrationError, ConfigError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run, simulate_viking_run
from smalldata.spectro.pipelines import HRIXSSpectra, VikingSpectra

PROPOSAL = 2937
SHAPE = (160, 320)


@pytest.fixture(scope="module")
def hrixs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe_hrixs")
    sim = CameraSim(camera="hrixs", shape=SHAPE, n_trains=8)
    truth = simulate_hrixs_run(root, PROPOSAL, 770, sim, "data", line_energies=(927.0, 928.5, 930.0))
    simulate_hrixs_run(root, PROPOSAL, 771, sim, "dark")

    def frames(run):
        return read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, run)), sim.preset)[1]
    return truth, characterise_dark(frames(771), "hrixs"), frames(770)


def _settings(truth):
    return dict(curvature=tuple(truth["curvature"]), energy_slope=float(truth["energy_slope"]),
                energy_intercept=float(truth["energy_intercept"]), energy_bins=(925.25, 931.75, 0.5))


def test_hrixs_centroid_spectrum(hrixs):
    truth, dark, raw = hrixs
    adu = float(truth["adu_per_photon"])
    ana = HRIXSSpectra(dark, threshold_sigma=8.0, double_threshold_adu=1.5 * adu, **_settings(truth))
    out = ana.process(raw)
    want = np.zeros_like(out["spectrum"])
    b = np.searchsorted(ana.edges, truth["hit_energy"], side="right") - 1
    np.add.at(want, (truth["hit_train"], b), truth["hit_photons"])
    assert np.abs(out["spectrum"] - want).sum() <= 0.01 * want.sum()
    np.testing.assert_array_equal(out["photons"], out["spectrum"].sum(axis=1))
    planted_doubles = np.bincount(truth["hit_train"][truth["hit_photons"] == 2], minlength=len(raw))
    assert np.abs(out["double_hits"] - planted_doubles).sum() <= 0.01 * len(truth["hit_y"])
    # batch independence: frame by frame gives the same
    for f in (0, 5):
        one = ana.process(raw[f:f + 1])
        np.testing.assert_array_equal(one["spectrum"][0], out["spectrum"][f])


def test_hrixs_integrated_spectrum(hrixs):
    truth, dark, raw = hrixs
    ana = HRIXSSpectra(dark, method="integrate", **_settings(truth))
    out = ana.process(raw)["spectrum"]
    centres = ana.energy
    for line in truth["line_energies"]:
        k = int(np.argmin(np.abs(centres - line)))
        assert out[:, k].sum() > 10 * np.abs(out[:, k + 2]).sum()  # each line in its bin, not in the next but one


def test_hrixs_bad_settings(hrixs):
    truth, dark, raw = hrixs
    with pytest.raises(ConfigError, match="'centroid' or 'integrate'"):
        HRIXSSpectra(dark, method="fit", **_settings(truth))
    with pytest.raises(ConfigError, match="either in ADU"):
        HRIXSSpectra(dark, **_settings(truth))
    ana = HRIXSSpectra(dark, threshold_adu=75.0, **_settings(truth))
    with pytest.raises(CalibrationError, match="hRIXS frames: dark images are 160x320"):
        ana.process(raw[:, :100])


def test_viking_pipeline(tmp_path):
    sim = dict(camera="newton", shape=(32, 256), n_trains=12, settings={"preampGain": 0, "HighCapacity": 0})
    truth = simulate_viking_run(tmp_path, PROPOSAL, 780, CameraSim(**sim), "reference")
    simulate_viking_run(tmp_path, PROPOSAL, 781, CameraSim(**sim), "dark")
    preset = CameraSim(**sim).preset
    run = extra_data.RunDirectory(run_path(tmp_path, PROPOSAL, 780))
    dark_run = extra_data.RunDirectory(run_path(tmp_path, PROPOSAL, 781))
    dark = characterise_dark(read_frames(dark_run, preset)[1], "newton", read_settings(dark_run, preset))
    s = read_settings(run, preset)
    ana = VikingSpectra(dark, int(s["preampGain"]), int(s["HighCapacity"]), tuple(truth["signal_range_px"]),
                        baseline_degree=2, calibration=tuple(truth["calibration"]))
    out = ana.process(read_frames(run, preset)[1])
    beam = truth["train_factor"][:, None] * truth["beam_pe"][None]
    sigma = 2.0 * np.sqrt(32 * (1 + 1 / 12)) * float(truth["pe_per_count"])
    assert np.std(out["spectrum_nobl"] - beam) < 1.3 * sigma
    np.testing.assert_allclose(ana.energy, truth["energy"])
    with pytest.raises(CalibrationError, match="preampGain=0, data with preampGain=2"):
        VikingSpectra(dark, 2, 0, (10, 20))
