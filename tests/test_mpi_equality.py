"""Every function, pulses, pattern, cube and sums at once: 2 ranks and another batch size give the same file."""
import subprocess

import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, mpiexec, read_all, tool

from smalldata.config.producer import ProducerConfig
from smalldata.pipeline.eventloop import run_producer


def full_config(tmp_path, sim_root, calib_dir):
    cfg = {
        "proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir),
        "output_dir": str(tmp_path), "batch_size": 8,
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}}},
        "pulses": {"laser_pulse_offset": 0},  # PPL bits start at slot 0; the laser is on the first X-ray pulse
        "digitizer": {"first_slot": 200, "first_sample": 1000, "samples_per_slot": 440.0},
        "pattern": {"labels": ["pumped", "unpumped"]},
        "rejection": {"xgm": "xgm/sa3_intensity", "xgm_min": 500.0},
        "detectors": {"dssc": {
            "dark_run": DARK_RUN, "gain": 15.0, "common_mode": "asic_row_median",
            "functions": [
                {"type": "azimuthal", "name": "azav", "center": [0.0004, -0.0003], "q_bins": 30,
                 "q_range": [8.0e7, 1.2e8], "polarization_fraction": 0.99},
                {"type": "roi", "name": "speckle", "module": 3, "roi": [64, 128, 384, 512], "children": [
                    {"type": "projection", "name": "proj", "axis": 1, "mean": True},
                    {"type": "autocorrelation", "name": "acorr", "crop_size": 5},
                    {"type": "photons", "name": "phot", "threshold": 0.5, "threshold_low": 0.3,
                     "threshold_unit": "photon", "save_photons": True}]},
                {"type": "droplet", "name": "drop", "threshold": 0.5, "threshold_low": 0.3,
                 "threshold_unit": "photon", "save_droplets": True},
                {"type": "roi", "name": "after", "module": 2, "roi": [0, 32, 0, 32]}],
            "vetoes": [{"after": "drop", "key": "drop_n_droplets", "op": "<", "value": 1500}],
            "cube": {"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity", "sum_squares": True},
            "sums": {"threshold": 0.5}}},
    }
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ProducerConfig.from_file(path)


@pytest.mark.mpi
def test_everything_identical_for_ranks_and_batches(tmp_path, sim_root, calib_dir):
    config = full_config(tmp_path, sim_root, calib_dir)
    one = run_producer(config, DATA_RUN, output=tmp_path / "one.h5").output
    two = tmp_path / "two.h5"
    result = subprocess.run(mpiexec(2) + [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(config.path),
                                          "--output", str(two), "--batch-size", "3"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    a, b = read_all(one), read_all(two)
    assert a.keys() == b.keys()
    for prefix in ("dssc/azav_", "dssc/speckle_acorr_", "dssc/speckle_phot_", "dssc/drop_list/", "Sums/dssc_cube/",
                   "Sums/dssc_mean", "digitizer/", "pulses/", "rejection/"):
        assert any(k.startswith(prefix) for k in a), prefix
    vetoed = (a["rejection/reasons"] & 32) != 0
    assert vetoed.any() and (~vetoed).any() and np.all(np.isnan(a["dssc/after_sum"][vetoed]))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def fused_config(tmp_path, sim_root, calib_dir, vetoes=()):
    """A config on the fused hot path: no common mode, fused built-ins, a plain droplet function,
    an ROI child that reads the kernel's crop, cube and run sums."""
    cfg = yaml.safe_load(full_config(tmp_path, sim_root, calib_dir).text)
    det = cfg["detectors"]["dssc"]
    det["common_mode"] = "none"
    det["vetoes"] = list(vetoes)
    det["functions"][1]["children"][0]["axis"] = 0
    det["functions"].append({"type": "projection", "name": "whole", "module": 2, "axis": 1})
    path = tmp_path / "fused.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ProducerConfig.from_file(path)


@pytest.mark.mpi
def test_fused_path_identical_for_ranks_and_batches(tmp_path, sim_root, calib_dir, caplog):
    config = fused_config(tmp_path, sim_root, calib_dir)
    with caplog.at_level("INFO", logger="smalldata.fused.plan"):
        one = run_producer(config, DATA_RUN, output=tmp_path / "one.h5").output
    assert "fused pass with 1 azimuthal, 3 ROI consumer(s), run sums/cube, calibrated frames for ['drop']" \
        in caplog.text
    two = tmp_path / "two.h5"
    result = subprocess.run(mpiexec(2) + [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(config.path),
                                          "--output", str(two), "--batch-size", "3"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    a, b = read_all(one), read_all(two)
    assert a.keys() == b.keys()
    for key in a:
        if a[key].dtype.kind == "O":  # strings
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


def test_fused_path_agrees_with_numpy_path(tmp_path, sim_root, calib_dir, monkeypatch):
    """With a veto (run sums and cube then take a second pass): the same frames, sums and cube."""
    config = fused_config(tmp_path, sim_root, calib_dir, vetoes=[
        {"after": "drop", "key": "drop_n_droplets", "op": "<", "value": 1500}])
    fused = read_all(run_producer(config, DATA_RUN, output=tmp_path / "fused.h5").output)
    monkeypatch.setenv("SMALLDATA_HOT_PATH", "numpy")
    plain = read_all(run_producer(config, DATA_RUN, output=tmp_path / "numpy.h5").output)
    assert fused.keys() == plain.keys()
    vetoed = (fused["rejection/reasons"] & 32) != 0
    assert vetoed.any() and (~vetoed).any()
    for key in fused:
        if fused[key].dtype.kind in "f" and not key.startswith("Sums/"):
            np.testing.assert_allclose(fused[key], plain[key], rtol=2e-6, atol=1e-8, err_msg=key)
        else:  # integers, booleans, and the exact fixed-point sums and cube
            np.testing.assert_array_equal(fused[key], plain[key], err_msg=key)
