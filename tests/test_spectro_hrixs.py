"""hRIXS curvature fit from an elastic line, energy calibration (planted coefficients recovered,
non-monotonic refused), spectra by centroiding (planted line energies) and by integration
(against a plain numpy pixel-overlap histogram)."""
import numpy as np
import pytest

import extra_data

from smalldata.cameras import characterise_dark
from smalldata.cameras.reading import read_frames
from smalldata.errors import CalibrationError, DataError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run
from smalldata.spectro.calibration import EnergyCalibration, check_monotonic
from smalldata.spectro.centroid import centroid
from smalldata.spectro.curvature import Curvature, fit_curvature
from smalldata.spectro.spectra import OverlapBinning, hit_energies, spectrum_from_hits

PROPOSAL, DATA, DARK, ELASTIC = 2937, 710, 711, 712
SHAPE = (160, 320)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hrixs_spectra")
    sim = CameraSim(camera="hrixs", shape=SHAPE, n_trains=12)
    lines = dict(line_energies=(927.0, 928.5, 930.0), elastic_energy=928.5)
    truth = simulate_hrixs_run(root, PROPOSAL, DATA, sim, "data", photons_per_train=60, **lines)
    simulate_hrixs_run(root, PROPOSAL, DARK, sim, "dark")
    # an elastic line as bright as the real ones (a few hundred ADU per pixel in a run)
    elastic = simulate_hrixs_run(root, PROPOSAL, ELASTIC, sim, "elastic", elastic_adu_per_row=400.0, **lines)

    def frames(run):
        return read_frames(extra_data.RunDirectory(run_path(root, PROPOSAL, run)), sim.preset)[1]
    dark = characterise_dark(frames(DARK), "hrixs")
    return dict(truth=truth, elastic=elastic, dark=dark, data=frames(DATA).astype(np.float32) - dark.mean,
                elastic_frames=frames(ELASTIC).astype(np.float64) - dark.mean)


def test_curvature_fitted_from_elastic_line(runs):
    truth = runs["elastic"]
    curv, y0 = fit_curvature(runs["elastic_frames"].sum(axis=0))
    c1, c2 = truth["curvature"]
    # over 320 columns the planted parabola moves the line by c1*x + c2*x^2 = 6.4 + 15.4 rows
    assert curv.c2 == pytest.approx(c2, abs=0.01 * c2)
    assert curv.c1 == pytest.approx(c1, abs=0.01 * abs(c1) + 5e-4)
    assert y0 == pytest.approx(float(truth["elastic_y0"]), abs=0.05)
    x = np.arange(SHAPE[1])
    assert np.max(np.abs(curv.shift(x) - Curvature(c1, c2).shift(x))) < 0.1


def test_curvature_fit_refuses_an_image_without_a_line():
    noise = np.random.default_rng(3).normal(0, 2, SHAPE)
    with pytest.raises(DataError, match="is this an elastic-line run"):
        fit_curvature(noise)
    with pytest.raises(DataError, match="fewer than 3 slices"):
        fit_curvature(noise[:, :40])


def test_line_energies_and_calibration_recovered(runs):
    truth, data = runs["truth"], runs["data"]
    adu = float(truth["adu_per_photon"])
    hits = centroid(data, 0.5 * adu, 1.5 * adu, runs["dark"].mask)
    curv = Curvature(*truth["curvature"])
    planted = EnergyCalibration.linear(float(truth["energy_slope"]), float(truth["energy_intercept"]), (0, SHAPE[0] - 1))
    e = hit_energies(hits, curv, planted)
    lines = truth["line_energies"]
    for line in lines:
        near = np.abs(e - line) < 0.3
        # line width 0.3 px x 0.05 eV/px; the mean of hundreds of photons within 2 meV
        assert near.sum() > 100
        assert e[near].mean() == pytest.approx(line, abs=0.002)
    # calibration from the lines: corrected rows of each line's photons against the known energies
    yc = curv.correct(hits.y, hits.x)
    rows = [yc[np.abs(e - line) < 0.3].mean() for line in lines]
    fitted = EnergyCalibration.fit(rows, lines, 1, (0, SHAPE[0] - 1))
    assert fitted.coefficients[1] == pytest.approx(float(truth["energy_slope"]), rel=1e-3)
    assert fitted.coefficients[0] == pytest.approx(float(truth["energy_intercept"]), abs=0.01)


def test_spectrum_by_centroiding_counts_planted_photons(runs):
    truth, data = runs["truth"], runs["data"]
    adu = float(truth["adu_per_photon"])
    hits = centroid(data, 0.5 * adu, 1.5 * adu, runs["dark"].mask)
    cal = EnergyCalibration.linear(float(truth["energy_slope"]), float(truth["energy_intercept"]), (0, SHAPE[0] - 1))
    edges = np.arange(925.25, 932.0, 0.5)  # lines in the middle of bins
    spec = spectrum_from_hits(hits, Curvature(*truth["curvature"]), cal, edges)
    assert spec.shape == (len(data), len(edges) - 1)
    want = np.zeros_like(spec)
    b = np.searchsorted(edges, truth["hit_energy"], side="right") - 1
    np.add.at(want, (truth["hit_train"], b), truth["hit_photons"])
    assert np.abs(spec - want).sum() <= 0.01 * want.sum()


def _naive_overlap(image, curv, cal, edges):
    """Plain numpy/Python: each pixel's energy interval and its overlap with each bin, one by one."""
    out = np.zeros(len(edges) - 1)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            yc = i - curv.shift(j)
            a, b = sorted((float(cal(yc - 0.5)), float(cal(yc + 0.5))))
            for k in range(len(edges) - 1):
                ov = min(b, edges[k + 1]) - max(a, edges[k])
                if ov > 0:
                    out[k] += image[i, j] * ov / (b - a)
    return out


def test_integration_matches_plain_pixel_overlap_histogram():
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 10, (3, 14, 9))
    curv = Curvature(0.3, -0.02)
    for cal in (EnergyCalibration((900.0, 0.07, 0.004), (-5, 20)),      # increasing, curved
                EnergyCalibration((910.0, -0.11), (-5, 20))):            # decreasing
        e = cal(np.array([-2.0, 16.0]))
        edges = np.sort(np.concatenate([np.linspace(e.min(), e.max(), 23), [e.min() + 0.013]]))
        # fine bins over part of the pixels' energies: pixels span many bins and run over the last edge
        part = np.linspace(e.min() + 0.3 * np.ptp(e), e.min() + 0.6 * np.ptp(e), 200)
        for bins in (edges, part):
            got = OverlapBinning(images.shape[1:], curv, cal, bins)(images)
            for n in range(len(images)):
                np.testing.assert_allclose(got[n], _naive_overlap(images[n], curv, cal, bins), rtol=1e-10, atol=1e-10)
        binning = OverlapBinning(images.shape[1:], curv, cal, edges)
        # every pixel whose interval lies inside the bins is shared out completely
        np.testing.assert_allclose(binning(np.ones((1,) + images.shape[1:]))[0], binning.coverage)


def test_integration_of_planted_run(runs):
    truth, data = runs["truth"], runs["data"]
    cal = EnergyCalibration.linear(float(truth["energy_slope"]), float(truth["energy_intercept"]), (0, SHAPE[0] - 1))
    edges = np.arange(920.0, 940.0, 0.025)
    spec = OverlapBinning(SHAPE, Curvature(*truth["curvature"]), cal, edges)(data)
    # all pixels fall inside the bins: the spectrum holds all the signal
    np.testing.assert_allclose(spec.sum(axis=1), data.sum(axis=(1, 2)).astype(np.float64), rtol=1e-5)
    centres = 0.5 * (edges[1:] + edges[:-1])
    mean = spec.sum(axis=0)
    adu = float(truth["adu_per_photon"])
    for line in truth["line_energies"]:
        near = np.abs(centres - line) < 0.25
        # each line where planted (width 0.015 eV + the 0.05 eV pixel), with its planted photons
        com = np.dot(mean[near], centres[near]) / mean[near].sum()
        # noise of the 10-row window (2 ADU per pixel and frame, the 12-frame dark mean's error) moves the
        # centre of mass by about 0.05 px = 0.0025 eV
        assert com == pytest.approx(line, abs=0.01)
        planted = truth["hit_photons"][truth["hit_energy"] == line].sum() * adu
        # noise of the window: 10 rows x 320 columns x 12 frames of 2 ADU, and the dark mean's error
        sigma = 2.0 * np.sqrt(10 * SHAPE[1] * 12) * np.sqrt(1 + 12 / 12)
        assert mean[near].sum() == pytest.approx(planted, abs=5 * sigma + 0.01 * planted)


@pytest.mark.parametrize("coefficients", [(900.0, 1.0, -0.01), (900.0, 0.0), (900.0, 0.0, 0.0, 1e-4)])
def test_non_monotonic_calibration_refused(coefficients):
    with pytest.raises(CalibrationError, match="not monotonic") as err:
        EnergyCalibration(coefficients, (0, 100))
    assert "\n" not in str(err.value)
    check_monotonic((900.0, 1.0, -0.01), (0, 40))  # the same parabola before its turn is fine


def test_calibration_inverse():
    cal = EnergyCalibration((860.0, 0.08, 1.2e-5), (0, 2047))
    p = np.array([0.0, 10.5, 1000.25, 2047.0])
    np.testing.assert_allclose(cal.pixel(cal(p)), p, atol=1e-8)
