"""Losses reach the console and /meta/losses: missing files, truncated files, rejected frames."""
import subprocess

import h5py
import numpy as np
from faults import damaged_copy, data_file, fault_config, validate
from helpers import DATA_RUN, tool


def run_cli(cfg, *args):
    return subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)] + list(args),
                          capture_output=True, text=True, timeout=120)


def test_missing_files_are_reported(tmp_path, sim_root, calib_dir):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    data_file(run_dir, "DSSC03", 1).unlink()  # one module's sequence file: trains 10..19
    data_file(run_dir, "DA01", 1).unlink()  # XGM and delay of trains 10..19
    cfg = fault_config(tmp_path, tmp_path / "root", calib_dir)
    result = run_cli(cfg)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "out" / f"r{DATA_RUN:04d}.h5"
    with h5py.File(output) as f:
        tids = f["trainId"][()]
        first = int(tids[0])
        lost_trains = set(range(first + 10, first + 20))
        incomplete = {(int(t), int(m)) for t, m in f["meta/incomplete_trains"][()]}
        assert {(t, 3) for t in lost_trains} <= incomplete
        assert np.all(f["dssc/m3_npix"][()][np.isin(tids, list(lost_trains))] == 0)
        losses = f["meta/losses"].attrs
        n_nan = int(np.count_nonzero(np.isin(tids, list(lost_trains))))
        assert losses["nan scan/delay"] == n_nan and losses["nan xgm/sa3_intensity"] == n_nan
        assert losses["incomplete_pairs"] == len(incomplete)
    # the console: one warning with every large loss, and the summary lines
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    large = [w for w in warnings if "large losses" in w]
    assert len(large) == 1 and "incomplete (train, module) pairs" in large[0] and "NaN in scan/delay" in large[0]
    assert f"lost: NaN in xgm/sa3_intensity: {n_nan} of {len(tids)}" in result.stdout, result.stdout


def test_truncated_module_file_is_reported(tmp_path, sim_root, calib_dir):
    run_dir = damaged_copy(sim_root, tmp_path / "root")
    path = data_file(run_dir, "DSSC02", 2)  # trains 20..23 of module 2
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    assert validate(run_dir).returncode != 0
    result = run_cli(fault_config(tmp_path, tmp_path / "root", calib_dir))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert any(path.name in line for line in result.stderr.splitlines() if line.startswith("WARNING")), result.stderr
    output = tmp_path / "out" / f"r{DATA_RUN:04d}.h5"
    with h5py.File(output) as f:
        tids = f["trainId"][()]
        assert list(f["meta"].attrs["unreadable_files"]) == [path.name]
        lost = set(range(int(tids[0]) + 20, int(tids[0]) + 24))
        assert {(t, 2) for t in lost} <= {(int(t), int(m)) for t, m in f["meta/incomplete_trains"][()]}
        assert np.all(f["dssc/m2_npix"][()][np.isin(tids, list(lost))] == 0)
    # 4 of module 2 here and the 2 trains module 3 misses in the simulated run
    assert "lost: incomplete (train, module) pairs: 6 of 48" in result.stdout, result.stdout


def test_everything_rejected_is_an_error(tmp_path, sim_root, calib_dir):
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(
        rejection={"xgm": "xgm/sa3_intensity", "xgm_min": 1e9}))
    result = run_cli(cfg)
    assert result.returncode == 2
    assert "every one of the" in result.stderr and "rejection" in result.stderr
    assert not (tmp_path / "out").exists()  # the refused run removes the output folder it made


def test_labels_contradicting_the_bunch_pattern_are_reported(tmp_path, sim_root, calib_dir):
    pulses = {"source": "SCS_RR_UTC/TSYS/TIMESERVER:outputBunchPattern", "key": "data.bunchPatternTable",
              "laser_pulse_offset": 0}
    cfg = fault_config(tmp_path, sim_root, calib_dir, extra=lambda c: c.update(
        pulses=pulses, pattern={"labels": ["image", "dark"]}))  # every frame of the simulated run had X-rays
    result = run_cli(cfg)
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "out" / f"r{DATA_RUN:04d}.h5") as f:
        is_dark, xray_on = f["pattern/is_dark"][()], f["pulses/xray_on"][()]
        n = int(np.count_nonzero(is_dark & xray_on))
        assert n > 0 and f["meta/losses"].attrs["frames labelled dark that had X-rays"] == n
    assert f"lost: frames labelled dark that had X-rays (pattern.labels?): {n} of {len(is_dark)}" in result.stdout
    assert "large losses" in result.stderr and "frames labelled dark that had X-rays" in result.stderr
