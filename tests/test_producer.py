"""The producer end to end on a simulated run: numbers, MPI equality, bookkeeping, failures."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, mpiexec, read_all, tool

from smalldata.config.producer import ProducerConfig
from smalldata.errors import SmallDataError
from smalldata.pipeline.eventloop import run_producer, split_blocks
from smalldata.parallel.mpi import frame_batches, split_batches
from smalldata.simulate import read_truth, run_path

ROI_MODULE = 2


def producer_yaml(tmp_path, sim_root, calib_dir, functions, modules=None, extra=None, name="producer.yaml"):
    cfg = {
        "proposal": PROPOSAL,
        "data_root": str(sim_root),
        "calib_dir": str(calib_dir),
        "output_dir": str(tmp_path / "out"),
        "batch_size": 8,
        "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": None, "mask_asic_edges": False,
                               "functions": functions}},
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}},
        },
    }
    if modules is not None:
        cfg["detectors"]["dssc"]["modules"] = modules
    if extra:
        extra(cfg)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


FUNCS = [
    {"type": "roi", "name": "roi_full", "module": ROI_MODULE, "roi": [0, 128, 0, 512]},
    {"type": "roi", "name": "roi_a", "module": 3, "roi": [10, 60, 100, 300], "threshold": 5.0,
     "write_image": True, "children": [{"type": "projection", "name": "proj", "axis": 0}]},
]


@pytest.fixture(scope="module")
def produced(tmp_path_factory, sim_root, calib_dir):
    tmp = tmp_path_factory.mktemp("producer")
    cfg_path = producer_yaml(tmp, sim_root, calib_dir, FUNCS)
    config = ProducerConfig.from_file(cfg_path)
    summary = run_producer(config, DATA_RUN, command="pytest")
    return cfg_path, summary.output


def reference_calibrated(sim_root, calib_dir, module):
    """Calibrated frames of one module with plain numpy: (raw - pedestal[cell]), valid pixels."""
    from extra_data import RunDirectory

    run = RunDirectory(str(run_path(sim_root, PROPOSAL, DATA_RUN)))
    src = f"SCS_DET_DSSC1M-1/DET/{module}CH0:xtdf"
    raw = run[src, "image.data"].ndarray()[:, 0]
    cells = run[src, "image.cellId"].ndarray()[:, 0]
    tids = run[src, "image.trainId"].ndarray()[:, 0]
    with h5py.File(calib_dir / f"dark_p{PROPOSAL:06d}_r{DARK_RUN:04d}_dssc.h5", "r") as f:
        m = list(f["modules"][:]).index(module)
        ped = f["pedestal"][m]
        cell_index = {int(c): i for i, c in enumerate(f["cell_ids"][:])}
        good = f["status_mask"][m] == 0
    ped_frames = ped[[cell_index[int(c)] for c in cells]]
    data = raw.astype(np.float32) - ped_frames
    valid = good[None] & (raw < 511)
    return tids, data, valid


def test_roi_sum_equals_numpy_sum(produced, sim_root, calib_dir):
    _, output = produced
    tids, data, valid = reference_calibrated(sim_root, calib_dir, 3)
    with h5py.File(output, "r") as f:
        out_tids = f["trainId"][:]
        present = np.isin(out_tids, tids)
        roi_sum = f["dssc/roi_a_sum"][:][present]
        roi_img = f["dssc/roi_a_image"][:][present]
        proj = f["dssc/roi_a_proj_profile"][:][present]
        assert f["dssc/roi_a_sum"].attrs["units"] == "ADU"
    crop = np.where(valid, data, 0)[:, 10:60, 100:300]
    crop = np.where(crop >= 5.0, crop, 0)
    expected = crop.sum(axis=(1, 2), dtype=np.float64)
    assert len(expected) == len(roi_sum) > 0
    np.testing.assert_allclose(roi_sum, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(proj, crop.sum(axis=1, dtype=np.float64), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(np.nan_to_num(roi_img, nan=-1), np.where(valid[:, 10:60, 100:300], crop, -1))


def test_planted_photons_recovered(produced, sim_root, sim_config):
    _, output = produced
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    j = list(truth["modules"]).index(ROI_MODULE)
    with h5py.File(output, "r") as f:
        measured = f["dssc/roi_full_sum"][:] / sim_config.gain_adu_per_photon
        tids, pids = f["trainId"][:], f["pulseId"][:]
    key = {(int(t), int(p)): i for i, (t, p) in enumerate(zip(truth["frame_train_id"], truth["frame_pulse_id"]))}
    idx = np.array([key[(int(t), int(p))] for t, p in zip(tids, pids)])
    planted = truth["frame_photons"][idx, j].astype(float)
    assert planted.sum() > 1000
    diff = measured - planted
    # per frame: electronic noise of 65536 pixels (1..3 ADU each), in photons
    per_frame_sigma = np.sqrt(65536 * np.mean(np.linspace(1, 3, 100) ** 2)) / sim_config.gain_adu_per_photon
    assert np.all(np.abs(diff) < 5 * per_frame_sigma + 0.01 * planted)
    assert diff.std() < 1.3 * per_frame_sigma
    # the mean: frame noise averages down; the pedestal error (noise / sqrt(200) per pixel) is shared by
    # all frames of a cell (4 cells); masked pixels lose ~0.3% of the photons
    pedestal_sigma = np.sqrt(65536) * 3.0 / np.sqrt(200) / sim_config.gain_adu_per_photon / np.sqrt(4)
    tolerance = 4 * np.hypot(per_frame_sigma / np.sqrt(len(diff)), pedestal_sigma) + 0.005 * planted.mean()
    assert abs(diff.mean()) < tolerance, (diff.mean(), tolerance)


def test_point_data_aligned(produced, sim_root):
    _, output = produced
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    key = {(int(t), int(p)): i for i, (t, p) in enumerate(zip(truth["frame_train_id"], truth["frame_pulse_id"]))}
    with h5py.File(output, "r") as f:
        idx = np.array([key[(int(t), int(p))] for t, p in zip(f["trainId"][:], f["pulseId"][:])])
        np.testing.assert_allclose(f["scan/delay"][:], truth["frame_delay"][idx])
        assert f["scan/delay"].attrs["units"] == "mm"
        xgm = f["xgm/sa3_intensity"][:]
    xray = truth["frame_xray"][idx].astype(bool)
    np.testing.assert_allclose(xgm[xray], truth["frame_xgm"][idx][xray], rtol=1e-6)


def test_every_train_accounted_and_ordered(produced, sim_root):
    _, output = produced
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    with h5py.File(output, "r") as f:
        tids = f["trainId"][:]
        skipped = f["meta/skipped_trainId"][:]
        incomplete = f["meta/incomplete_trains"][:]
        assert f["meta"].attrs["n_ranks"] == 1
        assert "roi_full" in f["UserDataCfg/dssc"]
        assert f["UserDataCfg/dssc/roi_a"].attrs["threshold"] == 5.0
        assert "dark" in f["UserDataCfg/dssc"] and "mask" in f["UserDataCfg/dssc"]
        assert f["UserDataCfg/dssc/dark/pedestal_median"].attrs["units"] == "ADU"
        assert f["UserDataCfg/dssc/x"].attrs["units"] == "m"
    assert np.all(np.diff(tids.astype(np.int64)) >= 0)
    assert set(tids) | set(skipped) == set(truth["train_ids"])
    # module 3 misses trains 5 and 6: recorded, the trains are still there through module 2
    missing = truth["train_ids"][np.nonzero(truth["module_missing"][list(truth["modules"]).index(3)])[0]]
    assert set(missing) <= set(tids)
    assert set(missing) == {int(t) for t, m in incomplete if m == 3}


def test_frames_of_missing_module_are_invalid(produced, sim_root):
    _, output = produced
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    missing = truth["train_ids"][np.nonzero(truth["module_missing"][list(truth["modules"]).index(3)])[0]]
    with h5py.File(output, "r") as f:
        tids = f["trainId"][:]
        npix = f["dssc/roi_a_npix"][:]
    assert np.all(npix[np.isin(tids, missing)] == 0)
    assert np.all(npix[~np.isin(tids, missing)] > 0)


def test_module_only_run_skips_missing_trains(tmp_path, sim_root, calib_dir):
    cfg = producer_yaml(tmp_path, sim_root, calib_dir, [FUNCS[1]])
    summary = run_producer(ProducerConfig.from_file(cfg), DATA_RUN)
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    missing = truth["train_ids"][np.nonzero(truth["module_missing"][list(truth["modules"]).index(3)])[0]]
    with h5py.File(summary.output, "r") as f:
        skipped = f["meta/skipped_trainId"][:]
        reasons = f["meta/skipped_reason"].asstr()[:]
        tids = f["trainId"][:]
    assert set(skipped) == set(missing) and all("no detector frames" in r for r in reasons)
    assert set(tids) | set(skipped) == set(truth["train_ids"])


def test_batch_size_does_not_change_output(tmp_path, produced, sim_root, calib_dir):
    cfg_path, output = produced
    config = ProducerConfig.from_file(cfg_path)
    other = run_producer(config, DATA_RUN, output=tmp_path / "b3.h5", batch_size=3)
    a, b = read_all(output), read_all(other.output)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.mpi
def test_two_ranks_equal_one_rank(tmp_path, produced):
    cfg_path, output = produced
    out2 = tmp_path / "n2.h5"
    result = subprocess.run(mpiexec(2) + [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg_path),
                                          "--output", str(out2)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    a, b = read_all(output), read_all(out2)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with h5py.File(out2, "r") as f:
        assert f["meta"].attrs["n_ranks"] == 2


def test_existing_output_kept_without_overwrite(produced):
    cfg_path, output = produced
    before = output.stat().st_mtime_ns
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "exists; pass --overwrite" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert output.stat().st_mtime_ns == before


def test_max_trains(tmp_path, produced):
    cfg_path, _ = produced
    summary = run_producer(ProducerConfig.from_file(cfg_path), DATA_RUN, output=tmp_path / "k.h5", max_trains=3)
    with h5py.File(summary.output, "r") as f:
        assert len(set(f["trainId"][:])) == 3


FAILING_FUNC = '''
import os, time
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc
class Fails(DetObjectFunc):
    def __init__(self, name: str = "fails", fail_from_train: int = 0, sleep: float = 0.0):
        super().__init__(name)
        self.fail_from_train = fail_from_train
        self.sleep = sleep
    def process(self, frames):
        time.sleep(self.sleep)
        if self.fail_from_train and frames.train_ids.max() >= self.fail_from_train:
            raise RuntimeError("planted failure")
        return {"n": np.ones(len(frames), np.int32)}
'''


def _failing_config(tmp_path, sim_root, calib_dir, fail_from_train, sleep=0.0):
    (tmp_path / "failmod.py").write_text(FAILING_FUNC)
    func = {"type": "failmod:Fails", "fail_from_train": fail_from_train, "sleep": sleep}
    return producer_yaml(tmp_path, sim_root, calib_dir, [FUNCS[0], func])


def _leftovers(folder: Path):
    return [p.name for p in folder.iterdir()] if folder.exists() else []


@pytest.mark.mpi
def test_failing_rank_stops_all_and_leaves_nothing(tmp_path, sim_root, calib_dir):
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)
    # the last trains belong to rank 1: it fails, rank 0 finishes its block
    cfg = _failing_config(tmp_path, sim_root, calib_dir, fail_from_train=int(truth["train_ids"][20]))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run(mpiexec(2) + [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("INFO ")]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and "rank 1: RuntimeError: planted failure" in lines[0], lines
    assert "(in function detectors.dssc.functions[1] (failmod:Fails)" in lines[0], lines
    assert _leftovers(tmp_path / "out") == []


def test_killed_run_leaves_no_final_file(tmp_path, sim_root, calib_dir):
    cfg = _failing_config(tmp_path, sim_root, calib_dir, fail_from_train=0, sleep=0.5)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg), "--batch-size", "4"],
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    out = tmp_path / "out"
    while time.monotonic() < deadline and not any(p.endswith(".parts") for p in _leftovers(out)):
        time.sleep(0.1)
    assert any(p.endswith(".parts") for p in _leftovers(out)), "the producer never made its part files"
    time.sleep(1.5)
    assert proc.poll() is None, f"the producer ended before the signal: {proc.communicate()[1]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / f"r{DATA_RUN:04d}.h5").exists()
    assert all(name.startswith(".") for name in _leftovers(out))


def test_cli_errors_are_one_line(tmp_path, sim_root, calib_dir):
    cfg = producer_yaml(tmp_path, sim_root, calib_dir, [dict(FUNCS[0], roi=[0, 130, 0, 10])])
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "detectors.dssc.functions[0].roi" in result.stderr
    cfg = producer_yaml(tmp_path, sim_root, calib_dir, FUNCS, extra=lambda c: c["detectors"]["dssc"].update(
        dark_run=999))
    result = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "detectors.dssc.dark_run" in result.stderr and "smd_dark -p 2937 -r 999" in result.stderr
    result = subprocess.run([tool("smd_producer"), "-r", "777", "-c", str(cfg)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "r0777" in result.stderr


def test_split_helpers():
    frames = np.array([4, 4, 4, 3, 3, 0, 3])
    blocks = split_blocks(frames, 3)
    assert blocks[0][0] == 0 and blocks[-1][1] == 7
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert split_batches(frames, 8) == [(0, 2), (2, 4), (4, 7)]
    assert split_batches(frames, 1) == [(i, i + 1) for i in range(7)]
    assert split_blocks(np.array([5]), 3)[0] == (0, 1)
    # trains longer than a batch are cut into pieces of their frame positions, unless whole trains are needed
    assert frame_batches(frames, 8) == [(0, 2, None), (2, 4, None), (4, 7, None)]
    assert frame_batches(np.array([2, 10, 3]), 4) == [(0, 1, None), (1, 2, (0, 4)), (1, 2, (4, 8)),
                                                     (1, 2, (8, 10)), (2, 3, None)]
    assert frame_batches(np.array([2, 10, 3]), 4, whole_trains=True) == [(0, 1, None), (1, 2, None), (2, 3, None)]


def test_region_calibration_gives_same_numbers(tmp_path, produced, sim_root, calib_dir):
    _, output = produced
    cfg = producer_yaml(tmp_path, sim_root, calib_dir, [FUNCS[1]], modules=[2, 3])
    config = ProducerConfig.from_file(cfg)
    from smalldata.io.runaccess import RunAccess
    from smalldata.pipeline.detectors import setup_detectors

    setup = setup_detectors(config, PROPOSAL, RunAccess.open(PROPOSAL, DATA_RUN, str(sim_root)))[0]
    assert setup.region == (10, 60, 100, 300)
    summary = run_producer(config, DATA_RUN)
    a, b = read_all(output), read_all(summary.output)
    keys = [k for k in a if k.startswith("dssc/roi_a")]
    assert len(keys) >= 7
    for key in keys:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_auto_batch_size():
    from smalldata.detectors.camera import camera_type
    from smalldata.detectors.dssc import DSSC
    from smalldata.cameras.presets import get_preset
    from smalldata.pipeline.eventloop import auto_batch_size

    assert auto_batch_size(64, 16, DSSC) == 32      # full detector: 2 MiB of raw data per frame
    assert auto_batch_size(64, 1, DSSC) == 512
    assert auto_batch_size(0.01, 16, DSSC) == 1
    assert auto_batch_size(64, 1, camera_type(get_preset("hrixs"))) == 8  # 2048 x 2048 x 2 bytes: 8 MiB


def test_terminated_run_cleans_up(tmp_path, sim_root, calib_dir):
    cfg = _failing_config(tmp_path, sim_root, calib_dir, fail_from_train=0, sleep=0.5)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg), "--batch-size", "4"],
                            env=env, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "out"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.endswith(".parts") for p in _leftovers(out)):
        time.sleep(0.1)
    assert any(p.endswith(".parts") for p in _leftovers(out)), "the producer never made its part files"
    time.sleep(1.0)
    assert proc.poll() is None, f"the producer ended before the signal: {proc.communicate()[1]}"
    proc.send_signal(signal.SIGTERM)  # what scancel and a SLURM time limit send
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted" in stderr and "Traceback" not in stderr
    assert _leftovers(out) == []  # no output, no part files, no temporary file
