"""SmallDataAna and runSmallDataAna on a producer output."""
import subprocess

import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, calib_dir, tool  # noqa: F401

from smalldata.ana.session import SmallDataAna
from smalldata.config.producer import ProducerConfig
from smalldata.errors import DataError, SmallDataError
from smalldata.pipeline.eventloop import run_producer


@pytest.fixture(scope="module")
def ana_setup(tmp_path_factory, sim_root, calib_dir):
    tmp = tmp_path_factory.mktemp("ana")
    cfg = {
        "proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir), "output_dir": str(tmp),
        "point_data": {"scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY",
                                          "key": "actualPosition.value", "units": "mm"}}},
        "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": 15.0, "mask_asic_edges": False, "functions": [
            {"type": "roi", "name": "spot", "module": 3, "roi": [64, 128, 384, 512]}]}},
    }
    path = tmp / "producer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = ProducerConfig.from_file(path)
    run_producer(config, DATA_RUN)
    return config


def test_keys_cut_and_binning(ana_setup):
    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    assert {"trainId", "dssc/spot_sum", "scan/delay"} <= set(ana.keys())
    spot, delay = ana["dssc/spot_sum"], ana["scan/delay"]
    sel = ana.cut("scan/delay", 1.0, None)
    np.testing.assert_array_equal(sel, delay >= 1.0)
    binned = ana.binned("dssc/spot_sum", by="scan/delay", bins=np.array([-0.5, 2.5, 5.5]))
    np.testing.assert_allclose(binned["mean"], [spot[delay < 2.5].mean(), spot[delay >= 2.5].mean()])
    assert binned["count"].sum() == len(spot)
    with pytest.raises(KeyError, match="did you mean"):
        ana["dssc/spot_summ"]


def test_average_image_and_roi_stats(ana_setup, sim_root):
    from smalldata.simulate import read_truth

    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    sel = np.zeros(len(ana), bool)
    sel[::2] = True
    image = ana.AvImage("dssc", selection=sel, max_trains=50)
    assert image.shape == (2, 128, 512)
    stats = ana.roi_stats(image, module=3, roi=[64, 128, 384, 512], modules=[2, 3])
    # the ROI's mean per frame equals the per-event ROI mean averaged over the same frames
    np.testing.assert_allclose(stats["sum"], ana["dssc/spot_sum"][sel].mean(), rtol=0.01)
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    planted = truth["mean_photons"][1, 64:128, 384:512].mean()
    xgm_ratio = truth["frame_xgm"].mean() / truth["xgm_mean_uj"]
    assert abs(stats["mean"] - planted * xgm_ratio) < 0.1 * planted
    peak = ana.AvImage("dssc", selection=sel, statistic="max")
    assert np.nanmax(peak) >= np.nanmax(image)
    with pytest.raises(SmallDataError, match="no events"):
        ana.AvImage("dssc", selection=np.zeros(len(ana), bool))


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(DataError, match="run smd_producer first"):
        SmallDataAna(tmp_path / "r0001.h5")


def test_run_smalldata_ana_cli(ana_setup):
    result = subprocess.run([tool("runSmallDataAna"), "-r", str(DATA_RUN), "-c", str(ana_setup.path), "--no-shell"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"run {DATA_RUN}" in result.stdout and "ana.AvImage" in result.stdout
    result = subprocess.run([tool("runSmallDataAna"), "-r", "999", "-c", str(ana_setup.path), "--no-shell"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "r0999.h5 does not exist" in result.stderr


def test_run_sums_and_cube_access(tmp_path, sim_root, calib_dir):
    cfg = {"proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir), "output_dir": str(tmp_path),
           "pattern": {"labels": ["pumped", "unpumped"]},
           "detectors": {"dssc": {"dark_run": DARK_RUN, "modules": [2], "sums": {}, "cube": {}}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_producer(ProducerConfig.from_file(path), DATA_RUN)
    ana = SmallDataAna.from_run(DATA_RUN, path)
    sums = ana.run_sums("dssc")
    cube = ana.cube("dssc")
    assert sums["mean"].shape == (1, 128, 512) and "count_above" not in sums
    assert list(cube.labels) == ["pumped", "unpumped"] and cube.count.sum() == len(ana)
    # the run mean is the frame-weighted mean of the two labels' means
    weights = cube.pixel_count[0]
    with np.errstate(invalid="ignore"):
        combined = (cube.mean()[0] * weights).sum(axis=0) / weights.sum(axis=0)
    np.testing.assert_allclose(sums["mean"], combined, atol=1e-9, equal_nan=True)
    with pytest.raises(SmallDataError, match="no run sums"):
        ana.run_sums("other")
