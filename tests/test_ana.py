"""SmallDataAna and runSmallDataAna on a producer output."""
import subprocess

import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, tool

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
            {"type": "roi", "name": "spot", "module": 3, "roi": [64, 128, 384, 512],
             "children": [{"type": "projection", "name": "proj", "axis": 0}]}]}},
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


def test_binned_integer_bins_keep_every_event(ana_setup):
    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    delay = ana["scan/delay"]
    n_steps = len(np.unique(delay))
    binned = ana.binned("dssc/spot_sum", by="scan/delay", bins=n_steps)
    # the largest delay sits on the last edge: it belongs to the last bin, not outside
    assert binned["count"].sum() == len(delay) and (binned["count"] > 0).all()
    np.testing.assert_allclose(binned["mean"][-1], ana["dssc/spot_sum"][delay == delay.max()].mean())
    per_value = ana.binned("dssc/spot_sum", by="scan/delay")  # bins=None: one per scan step
    np.testing.assert_array_equal(per_value["count"], [np.sum(delay == d) for d in np.unique(delay)])


def test_binned_profile_per_bin(ana_setup):
    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    profile, delay = ana["dssc/spot_proj_profile"], ana["scan/delay"]
    assert profile.ndim == 2
    binned = ana.binned("dssc/spot_proj_profile", by="scan/delay", bins=np.array([-0.5, 2.5, 5.5]))
    assert binned["mean"].shape == (2, profile.shape[1])
    np.testing.assert_allclose(binned["mean"][1], np.nanmean(profile[delay >= 2.5], axis=0), rtol=1e-12)


def test_membership_and_iteration(ana_setup):
    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    assert "trainId" in ana and "/dssc/spot_sum" in ana and "nothing" not in ana and 3 not in ana
    assert list(ana) == ana.keys() and "scan/delay" in list(ana)


def test_images_carry_their_modules(ana_setup):
    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    only3 = ana.AvImage("dssc", max_trains=4, modules=[3])
    both = ana.AvImage("dssc", max_trains=4, modules=[2, 3])
    assert only3.modules == (3,) and both.modules == (2, 3)
    geometry = ana.geometry("dssc")
    drawn = geometry.index_map >= 0
    module_of = np.where(drawn, geometry.index_map // (128 * 512), -1)
    assembled = ana.assemble(only3)  # drawn with its own module list, not the last AvImage's
    assert np.isnan(assembled[module_of == 2]).all()
    np.testing.assert_array_equal(np.sort(assembled[module_of == 3]), np.sort(only3.data[0].ravel()))
    # module 1 is not in an image of modules (2, 3): an error, not module 3's numbers
    with pytest.raises(SmallDataError, match="module 1 is not in this image"):
        ana.roi_stats(both, module=1, roi=[0, 10, 0, 10])
    stats = ana.roi_stats(both, module=3, roi=[64, 128, 384, 512])
    assert stats["sum"] == pytest.approx(float(np.nansum(both.module(3)[64:128, 384:512])), rel=1e-6)
    with pytest.raises(SmallDataError, match="does not say which modules"):
        ana.assemble(np.asarray(both))


def test_avimage_subtracts_intra_darks_like_the_producer(tmp_path, sim_root, calib_dir):
    cfg = {"proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir), "output_dir": str(tmp_path),
           "pattern": {"labels": ["pumped", "pumped_dark"], "subtract_dark": "matching"},
           "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": 15.0, "modules": [3], "sums": {}}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_producer(ProducerConfig.from_file(path), DATA_RUN, max_trains=6)
    ana = SmallDataAna.from_run(DATA_RUN, path)
    image = ana.AvImage("dssc", max_trains=6, modules=[3])
    # the run sums are exact fixed-point sums (steps of ~6e-5 photon); without the subtraction
    # the two differ by up to 0.1 photon
    np.testing.assert_allclose(image.data, ana.run_sums("dssc")["mean"], atol=2e-4, equal_nan=True)


def test_banner_examples_exist(ana_setup):
    import re

    from smalldata.cli.runSmallDataAna import banner

    ana = SmallDataAna.from_run(DATA_RUN, ana_setup.path)
    text = banner(ana)
    named = set(re.findall(r'ana\.(?:cut|plotVar|plotScan|binned)\("([^"]+)"', text))
    named |= set(re.findall(r'ana\["([^"]+)"\]', text)) | set(re.findall(r'by="([^"]+)"', text))
    assert named and all(name in ana for name in named), named


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
