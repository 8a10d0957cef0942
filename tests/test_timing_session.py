"""The session's pump-probe tools on the timing run: scan detection, laser-off references against the
planted drift, time zero and rise time, knife edge and fluence, derived variables and filters kept
between sessions."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from smalldata.ana.references import off_reference, running_median
from smalldata.ana.session import SmallDataAna
from smalldata.ana.timefits import GAUSS_FWHM, fit_time_zero
from smalldata.errors import SmallDataError
from smalldata.simulate import read_truth
from smalldata.timing.delays import stage_to_ps
from timing_runs import PROPOSAL, RUN, TIMING, timing_run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return timing_run(tmp_path_factory)


@pytest.fixture(scope="module")
def truth(root):
    t = read_truth(root, PROPOSAL, RUN)
    order = np.lexsort((t["frame_pulse_id"], t["frame_train_id"]))
    return {k: (v[order] if k.startswith("frame_") else v) for k, v in t.items()}


@pytest.fixture
def ana(root, tmp_path):
    """A session on a copy of the output (derived files go beside it)."""
    path = tmp_path / f"r{RUN:04d}.h5"
    shutil.copy(root / "out" / path.name, path)
    return SmallDataAna(path, plot_dir=tmp_path / "plots")


def test_scan_variable_found(ana):
    assert ana.scan_name == "delay/step_delay"
    np.testing.assert_allclose(ana.scan_values, np.sort(stage_to_ps(np.array(TIMING.stage_steps_mm),
                                                                    TIMING.time_zero_mm)))


def test_off_reference_removes_the_planted_drift(ana, truth):
    refl = ana["pd/reflectivity"]
    on = np.asarray(ana["pulses/laser_on"], bool)
    ref = ana.getOffVar("pd/reflectivity", n=4)
    residual = (refl - ref - truth["frame_reflectivity_step"])[on]
    drift = truth["frame_drift"][on]
    raw_residual = (refl - truth["frame_reflectivity_step"])[on]
    # without the reference the drift is all there; with it, what is left is the noise of 1 + 1/4 readings
    assert np.polyfit(drift, raw_residual, 1)[0] == pytest.approx(1.0, abs=0.05)
    slope, _ = np.polyfit(drift, residual, 1)
    assert abs(slope) < 0.05
    assert np.std(residual) == pytest.approx(TIMING.signal_noise * np.sqrt(1.25), rel=0.2)
    # the reference of a frame is the mean of its 4 nearest laser-off frames, by brute force for a few
    off = ana.off_frames()
    times = (ana["trainId"] - ana["trainId"][0]) * 0.1 + ana["pulses/slot"] / 4.5e6
    for i in np.flatnonzero(on)[::37]:
        cand = np.flatnonzero(off & (np.arange(len(off)) != i))
        nearest = cand[np.argsort(np.abs(times[cand] - times[i]), kind="stable")[:4]]
        assert ref[i] == pytest.approx(refl[nearest].mean(), abs=1e-12)


def test_time_zero_and_rise_time_recovered(ana):
    result = ana.fit_time_zero("pd/reflectivity", reference=4, after="linear")
    assert result["units"]["t0"] == "ps"
    assert abs(result["t0"] - TIMING.signal_t0_ps) < 3 * result["t0_err"] and result["t0_err"] < 0.02
    assert abs(result["rise"] - TIMING.signal_rise_ps) < 3 * result["rise_err"] and result["rise_err"] < 0.05
    assert abs(result["slope"] - TIMING.signal_slope_per_ps) < 3 * result["slope_err"]
    # the stage position of the fitted time zero, for the config's delay.time_zero
    assert result["time_zero_stage"] == pytest.approx(TIMING.time_zero_mm + result["t0"] / stage_to_ps(1.0, 0.0),
                                                      abs=1e-12)
    assert ana.plots.last_path is not None and ana.plots.last_path.is_file()


def test_knife_edge_beam_size_and_fluence(ana):
    result = ana.knife_edge("pd/knife", "scan/knife_x", normalise_by="xgm/sa3_intensity")
    sigma = TIMING.knife_sigma_mm * 1e-3
    assert result["units"]["sigma"] == "m" and result["units"]["fluence"] == "J/m^2"
    assert abs(result["sigma"] - sigma) < 3 * result["sigma_err"] and result["sigma_err"] < 0.05 * sigma
    assert abs(result["centre"] - TIMING.knife_center_mm * 1e-3) < 3 * result["centre_err"]
    assert result["fwhm"] == pytest.approx(GAUSS_FWHM * result["sigma"])
    xgm = ana["xgm/sa3_intensity"]
    energy = np.nanmean(xgm[np.isfinite(ana["pd/knife"])]) * 1e-6
    planted = energy / (2 * np.pi * sigma ** 2)
    assert abs(result["fluence"] - planted) < 3 * result["fluence_err"]
    assert result["fluence_mJ_cm2"] == pytest.approx(result["fluence"] / 10)


def test_derived_variables_and_filters_survive_a_new_session(ana):
    ratio = ana["pd/reflectivity"] / ana["xgm/sa3_intensity"]
    ana.addVar("derived/ratio", ratio, units="1/uJ")
    ana.addCut("xgm/sa3_intensity", 900, None, cut="bright")
    ana.addCut("derived/ratio", None, 1e-3, cut="bright")
    keep = ana.getFilter("bright")
    ana.saveFilters()
    assert 0 < keep.sum() < len(keep)
    again = SmallDataAna(ana.path)
    np.testing.assert_array_equal(again["derived/ratio"], ratio)
    assert again.units("derived/ratio") == "1/uJ"
    np.testing.assert_array_equal(again.getFilter("bright"), keep)
    binned = again.binned("derived/ratio", "delay/step_delay")
    assert np.isfinite(binned["mean"]).all()
    np.testing.assert_array_equal(again.to_xarray()["derived_ratio"].values, ratio)
    with pytest.raises(SmallDataError, match="overwrite=True"):
        again.addVar("derived/ratio", ratio)
    with pytest.raises(SmallDataError, match="one value per event"):
        again.addVar("derived/short", ratio[:-1])
    again.removeVar("derived/ratio")
    assert "derived/ratio" not in SmallDataAna(ana.path)


def test_running_median_against_numpy():
    rng = np.random.default_rng(1)
    values = rng.normal(size=50)
    values[7] = np.nan
    med = running_median(values, 5)
    for i in (0, 3, 7, 20, 49):
        window = values[max(0, i - 2):i + 3]
        assert med[i] == pytest.approx(np.nanmedian(window))


def test_off_reference_needs_enough_frames():
    values = np.arange(6.0)
    off = np.array([True, False, True, False, False, False])
    ref = off_reference(values, off, np.arange(6.0), n=2)
    assert np.isnan(ref).all()  # two reference frames, and a frame never references itself
    ref = off_reference(values, off, np.arange(6.0), n=1)
    np.testing.assert_allclose(ref, [2.0, 0.0, 0.0, 2.0, 2.0, 2.0])


def test_a_fit_that_does_not_converge_ends_in_one_line():
    t = np.linspace(-1, 1, 50)
    with pytest.raises(SmallDataError) as err:
        fit_time_zero(t, np.zeros_like(t))
    assert "did not converge" in str(err.value) and "start values" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(SmallDataError, match="finite points"):
        fit_time_zero(t[:4], t[:4])
