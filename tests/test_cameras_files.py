"""Simulated camera runs in the facility's format: extra-data-validate, extra-data's own selection
giving the frames written, sequence files, settings, the Newton's train-id offset, bad input."""
import subprocess

import numpy as np
import pytest

import extra_data

from helpers import tool
from smalldata.cameras import PRESETS, get_preset
from smalldata.cameras.reading import read_frames, read_settings
from smalldata.errors import ConfigError, DataError
from smalldata.simulate import run_path
from smalldata.simulate.cameras import CameraSim, simulate_hrixs_run, write_camera_run

PROPOSAL = 2937


@pytest.fixture(scope="module")
def newton_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("camfiles")
    sim = CameraSim(camera="newton", shape=(16, 64), n_trains=25, sequence_trains=10,
                    settings={"preampGain": 1, "HighCapacity": 0})
    signal = np.random.default_rng(2).uniform(0, 500, (25, 16, 64))
    ids, images = write_camera_run(root, PROPOSAL, 740, sim, signal)
    return dict(root=root, sim=sim, ids=ids, images=images, path=run_path(root, PROPOSAL, 740))


def test_validates_with_extra_data(newton_run, tmp_path):
    assert len(list(newton_run["path"].glob("RAW-R0740-DA02-S*.h5"))) == 3
    sim = CameraSim(camera="hrixs", shape=(40, 50), n_trains=3)
    simulate_hrixs_run(tmp_path, PROPOSAL, 741, sim, "data", line_energies=(926.0,), line_weights=(1.0,),
                       photons_per_train=5)
    for path in (newton_run["path"], run_path(tmp_path, PROPOSAL, 741)):
        res = subprocess.run([tool("extra-data-validate"), str(path)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


def test_extra_data_selection_gives_the_frames_written(newton_run):
    preset = newton_run["sim"].preset
    run = extra_data.RunDirectory(newton_run["path"])
    sel = run.select(preset.source, "data.image.pixels")
    kd = sel[preset.source, "data.image.pixels"]
    np.testing.assert_array_equal(kd.ndarray(), newton_run["images"])
    np.testing.assert_array_equal(kd.train_id_coordinates(), newton_run["ids"])
    assert kd.dtype == np.uint16 and kd.shape == (25, 16, 64)
    # ours, through the same selection, with the Newton's train-id offset applied
    ids, frames = read_frames(run, preset)
    np.testing.assert_array_equal(frames, newton_run["images"])
    np.testing.assert_array_equal(ids, newton_run["ids"].astype(np.int64) - 1)
    ids, frames = read_frames(run, preset, train_ids=newton_run["ids"][[3, 12]])
    np.testing.assert_array_equal(frames, newton_run["images"][[3, 12]])
    assert read_settings(run, preset) == {"preampGain": 1.0, "HighCapacity": 0.0}
    assert run[preset.device, "preampGain.value"].ndarray().tolist() == [1] * 25


def test_missing_camera_source_named(newton_run):
    run = extra_data.RunDirectory(newton_run["path"])
    with pytest.raises(DataError) as err:
        read_frames(run, get_preset("hrixs"), what="run 740")
    msg = str(err.value)
    assert "SCS_HRIXS_DET/CAM/CAMERA:daqOutput" in msg and "SCS_EXP_NEWTON/CAM/CAMERA:daqOutput" in msg
    assert "run 740" in msg and "\n" not in msg
    with pytest.raises(DataError, match="with_shape"):
        read_frames(run, get_preset("newton"))  # the full 512 x 2048 preset on a 16 x 64 run


def test_presets():
    assert set(PRESETS) == {"newton", "hrixs", "maranax", "fastccd"}
    assert get_preset("newton").source == "SCS_EXP_NEWTON/CAM/CAMERA:daqOutput"
    assert get_preset("newton").shape == (512, 2048) and get_preset("newton").train_id_offset == -1
    assert get_preset("fastccd").source == "SCS_CDIDET_FCCD2M/DAQ/FCCD:daqOutput"
    assert get_preset("hrixs").with_shape((10, 20)).shape == (10, 20)
    with pytest.raises(ConfigError, match="unknown camera 'andor'; use one of fastccd, hrixs, maranax, newton"):
        get_preset("andor", "detectors.cam.type")


def test_smd_simulate_camera_presets(tmp_path):
    """The command writes full-size camera runs that extra-data validates; an existing run is refused."""
    cmd = [tool("smd_simulate"), "--root", str(tmp_path), "-p", str(PROPOSAL)]
    res = subprocess.run(cmd + ["-r", "760", "--dark-run", "761", "--preset", "viking-mono", "--trains", "2",
                                "--photon-energy", "870"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    run = extra_data.RunDirectory(run_path(tmp_path, PROPOSAL, 760))
    ids, frames = read_frames(run, get_preset("newton"))
    assert frames.shape == (2, 512, 2048)
    assert run["SA3_XTD10_MONO/MDL/PHOTON_ENERGY", "actualEnergy.value"].as_single_value() == 870.0
    res = subprocess.run(cmd + ["-r", "760", "--preset", "viking-mono"], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith("run 760 already exists under "
                                                         f"{tmp_path}; give another run number or --overwrite")
