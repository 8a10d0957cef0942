"""The examples work: a user's function through the producer, and the analysis script on an output."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL

from smalldata.config.producer import ProducerConfig
from smalldata.pipeline.eventloop import run_producer

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_custom_function_and_analysis_script(tmp_path, sim_root, calib_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    cfg = {
        "proposal": PROPOSAL, "data_root": str(sim_root), "calib_dir": str(calib_dir),
        "output_dir": str(tmp_path), "pulses": {"laser_pulse_offset": 0}, "pattern": {"labels": ["pumped", "unpumped"]},
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}}},
        "detectors": {"dssc": {
            "dark_run": DARK_RUN, "gain": 15.0,
            "functions": [
                {"type": "custom_function:BrightFraction", "name": "bright", "level": 0.5, "module": 2},
                {"type": "azimuthal", "name": "azav", "center": [0.0004, -0.0003], "q_bins": 20,
                 "q_range": [8.0e7, 1.2e8]}],
            "cube": {"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity"}}},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = ProducerConfig.from_file(path)
    output = run_producer(config, DATA_RUN).output
    setup_frames = _calibrated_module(config, sim_root, module=2)
    with h5py.File(output, "r") as f:
        fraction = f["dssc/bright_fraction"][:]
        assert f["UserDataCfg/dssc/bright"].attrs["level"] == 0.5
    data, valid = setup_frames
    expected = (valid & (data > 0.5)).sum(axis=(1, 2)) / valid.sum(axis=(1, 2))
    np.testing.assert_allclose(fraction, expected, rtol=1e-12)
    result = subprocess.run([sys.executable, str(EXAMPLES / "analyse_output.py"), str(output)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "image cube" in result.stdout and "per-frame azimuthal average" in result.stdout


def _calibrated_module(config, sim_root, module):
    from smalldata.io.runaccess import RunAccess
    from smalldata.pipeline.detectors import setup_detectors

    access = RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root))
    setup = setup_detectors(config, PROPOSAL, access)[0]
    frames = setup.calibrate(access.read_raw(setup.modules, access.train_ids), None)
    j = frames.modules.index(module)
    return frames.data[:, j], frames.valid[:, j]


def test_analysis_script_finds_the_planted_pump_effect_on_the_demo_config(tmp_path, sim_root, calib_dir,
                                                                          monkeypatch):
    """analyse_output.py on the demo's producer config over the simulated run: the ring's pumped / unpumped
    ratio per delay is the planted pump factor within 3 standard errors, by both ways it computes it."""
    from smalldata.simulate import read_truth, truth_path
    from smalldata.simulate.physics import pump_factor

    monkeypatch.syspath_prepend(str(EXAMPLES))
    import analyse_output

    cfg = yaml.safe_load((EXAMPLES.parent / "configs" / "producer.yaml").read_text())
    cfg.update(data_root=str(sim_root), calib_dir=str(calib_dir), output_dir=str(tmp_path))
    path = tmp_path / "producer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    output = run_producer(ProducerConfig.from_file(path), DATA_RUN).output
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    # the script as a user runs it: two tables (per frame, cube) of delay, pumped, unpumped, ratio, error
    result = subprocess.run([sys.executable, str(EXAMPLES / "analyse_output.py"), str(output)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    tables = [np.array([[float(v) for v in line.split()] for line in block.strip().splitlines()[2:]])
              for block in result.stdout.split("\n\n")[1:]]
    assert len(tables) == 2 and tables[0].shape == tables[1].shape and tables[0].shape[1] == 5, result.stdout
    per_frame, cube = tables
    planted = pump_factor(per_frame[:, 0], truth["pump_amplitude"], truth["pump_t0"], truth["pump_tau"])
    ratio, err = per_frame[:, 3], per_frame[:, 4]
    assert np.all(np.abs(ratio - planted) < 3 * err + 0.002), (ratio, planted, err)  # + the printed rounding
    np.testing.assert_array_equal(cube[:, 0], per_frame[:, 0])
    assert np.all(np.abs(cube[:, 3] - planted) < 3 * err + 0.002), (cube[:, 3], planted, err)
    assert planted.min() < 1 - 10 * err.max()  # the effect is far above the errors
    # the ring's range: around the planted ring, clear of the speckle region
    with h5py.File(output, "r") as f:
        q_range = analyse_output.ring_q_range(f)
    assert q_range[0] < truth["ring_q"] < q_range[1]
    assert truth["ring_q"] - 3 * truth["ring_sigma_q"] < q_range[0] and q_range[1] < truth["ring_q"] + 3 * truth[
        "ring_sigma_q"]
    # --truth adds the planted factor of each delay, read from the simulator's truth file
    result = subprocess.run([sys.executable, str(EXAMPLES / "analyse_output.py"), str(output), "--truth",
                             str(truth_path(sim_root, PROPOSAL, DATA_RUN))], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1].split()
    assert float(last[0]) == per_frame[-1, 0] and abs(float(last[-1]) - planted[-1]) < 1e-3
