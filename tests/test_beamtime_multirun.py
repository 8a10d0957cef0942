"""Several runs in one session: equal to the concatenation of the single-run sessions (to_xarray,
to_dataframe, binned, plotScan, AvImage), and runs made from different configs refused by name."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from beamtime_helpers import RUNS, shared_range, write_config

from smalldata.ana.session import SmallDataAna
from smalldata.errors import SmallDataError


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    return shared_range(tmp_path_factory)


@pytest.fixture(scope="module")
def sessions(produced):
    single = [SmallDataAna.from_run(r, produced["config_path"]) for r in RUNS]
    multi = SmallDataAna.from_runs(f"{RUNS[0]}-{RUNS[-1]}", produced["config_path"])
    return single, multi


def _file_arrays(produced, name):
    """``name`` of every run's output, read with plain h5py and concatenated."""
    parts = []
    for run in RUNS:
        with h5py.File(produced["out"] / f"r{run:04d}.h5", "r") as f:
            parts.append(f[name][()])
    return np.concatenate(parts)


def test_to_xarray_is_the_concatenation_with_a_run_coordinate(sessions):
    single, multi = sessions
    ds = multi.to_xarray()
    parts = [s.to_xarray() for s in single]
    assert ds.sizes["event"] == sum(p.sizes["event"] for p in parts) == len(multi)
    np.testing.assert_array_equal(ds["run"].values, np.repeat(RUNS, [len(s) for s in single]))
    for name in parts[0].data_vars:
        np.testing.assert_array_equal(ds[name].values, np.concatenate([p[name].values for p in parts]))
        assert ds[name].attrs.get("units") == parts[0][name].attrs.get("units")
    for coord in ("trainId", "pulseId", "cellId", "pulse"):
        np.testing.assert_array_equal(ds[coord].values, np.concatenate([p[coord].values for p in parts]))
    by_train = multi.to_xarray(["dssc/speckle_sum"], by="train")
    assert by_train.sizes["trainId"] == sum(p.sizes["trainId"] for p in (s.to_xarray(by="train") for s in single))
    np.testing.assert_array_equal(np.unique(by_train["run"].values), RUNS)


def test_to_dataframe_is_indexed_by_run(sessions):
    single, multi = sessions
    frame = multi.to_dataframe(["dssc/speckle_sum", "xgm/sa3_intensity"])
    assert list(frame.index.names) == ["run", "trainId", "pulse"]
    for run, s in zip(RUNS, single):
        one = s.to_dataframe(["dssc/speckle_sum", "xgm/sa3_intensity"])
        np.testing.assert_array_equal(frame.loc[run].to_numpy(), one.to_numpy())


def test_binned_and_plotScan_over_runs_equal_an_independent_computation(sessions, produced):
    _, multi = sessions
    delay = _file_arrays(produced, "scan/delay")
    signal = _file_arrays(produced, "dssc/speckle_sum")
    xgm = _file_arrays(produced, "xgm/sa3_intensity")
    kept = _file_arrays(produced, "rejection/reasons") == 0
    label = _file_arrays(produced, "pattern/label_id")
    result = multi.binned("dssc/speckle_sum", "scan/delay", selection=kept, normalise_by="xgm/sa3_intensity")
    steps = np.unique(delay[kept])
    np.testing.assert_allclose(result["centres"], steps)
    for k, step in enumerate(steps):
        chosen = kept & (delay == step)
        np.testing.assert_allclose(result["mean"][k], signal[chosen].sum() / xgm[chosen].sum(), rtol=1e-12)
        assert result["count"][k] == chosen.sum()
    scan = multi.plotScan("dssc/speckle_sum", selection=kept)
    for index, name in enumerate(("pumped", "unpumped")):
        for k, step in enumerate(steps):
            chosen = kept & (delay == step) & (label == index)
            np.testing.assert_allclose(scan[name]["mean"][k], signal[chosen].mean(), rtol=1e-12)
    np.testing.assert_allclose(scan["difference"], scan["pumped"]["mean"] - scan["unpumped"]["mean"])


def test_cuts_select_over_all_runs(sessions, produced):
    _, multi = sessions
    xgm = _file_arrays(produced, "xgm/sa3_intensity")
    keep = multi.addCut("xgm/sa3_intensity", 800.0, None, cut="bright")
    np.testing.assert_array_equal(keep, xgm >= 800.0)
    run_cut = multi.cut("run", RUNS[1], RUNS[1])
    assert run_cut.sum() == len(multi.sessions[1])


def test_AvImage_over_runs_equals_the_sum_of_the_runs_frames(sessions):
    single, multi = sessions
    selection = multi.cut("xgm/sa3_intensity", 800.0, None)
    image = multi.AvImage("dssc", selection=selection, modules=[3])
    total = count = None
    n_frames = 0
    for s, sel in zip(single, multi.split(selection)):  # every selected frame, calibrated as the producer does
        for frames, pick in s.calibrated_frames("dssc", sel, max_trains=50, modules=[3]):
            data = np.where(frames.valid[pick], frames.data[pick], np.nan)
            n_frames += int(pick.sum())
            s_sum = np.nansum(data, axis=0, dtype=np.float64)
            s_count = np.isfinite(data).sum(axis=0)
            total = s_sum if total is None else total + s_sum
            count = s_count if count is None else count + s_count
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = total / count
    assert image.n_frames == int(selection.sum())
    assert n_frames < image.n_frames  # run 611's module 3 lacks trains: fewer frames had its data
    assert image.modules == (3,)
    np.testing.assert_allclose(np.asarray(image), expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_runs_made_from_different_configs_are_refused_by_name(produced, tmp_path):
    from smalldata.config.producer import ProducerConfig
    from smalldata.pipeline.eventloop import run_producer

    other = write_config(tmp_path / "other.yaml", produced["root"], produced["out"], produced["tmp"] / "calib",
                         xgm_min=950.0)
    output = tmp_path / f"r{RUNS[2]:04d}.h5"
    run_producer(ProducerConfig.from_file(other), RUNS[2], output=output)
    parts = [SmallDataAna.from_run(r, produced["config_path"]) for r in RUNS[:2]] + [SmallDataAna(output)]
    from smalldata.ana.multirun import MultiRunAna

    with pytest.raises(SmallDataError) as info:
        MultiRunAna(parts)
    message = str(info.value)
    assert message.startswith(f"runs {RUNS[2]} were made from another config than run {RUNS[0]} "
                              f"(run {RUNS[2]}: rejection.xgm_min)")
    assert "\n" not in message
    combined = MultiRunAna(parts, allow_config_differences=True)
    assert combined.config_differences == {RUNS[2]: ["rejection.xgm_min"]}
    assert len(combined) == sum(len(p) for p in parts)
