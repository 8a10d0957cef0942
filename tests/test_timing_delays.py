"""Delays per frame: stage, trigger and BAM against EXtra's ``OpticalLaserDelay`` and the planted truth;
scan steps with backlash; bad delay input ends in one line."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from extra.components import OpticalLaserDelay, XrayPulses
from extra_data import RunDirectory

from smalldata.errors import ConfigError, DataError
from smalldata.simulate import read_truth, run_path
from smalldata.timing.delays import stage_to_ps
from smalldata.timing.steps import find_steps
from timing_runs import PROPOSAL, RUN, TIMING, config_dict, timing_run, write_config


DELAY_STAGE = "SCS_ILH_LAS/MOTOR/LT3"
DELAY_TRIGGER = "SCS_ILH_LAS/DOOCS/PPL_TRIGGER"
DELAY_BAM = "SCS_ILH_LAS/DOOCS/BAM_414_B2:output"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return timing_run(tmp_path_factory)


@pytest.fixture(scope="module")
def out(root):
    with h5py.File(root / "out" / f"r{RUN:04d}.h5", "r") as f:
        data = {k: f[k][()] for k in ("trainId", "pulseId", "pulses/slot", "pulses/xray_on")}
        data.update({f"delay/{k}": f[f"delay/{k}"][()] for k in f["delay"]})
        data["units"] = {k: f[f"delay/{k}"].attrs.get("units", "") for k in f["delay"]}
        data["losses"] = dict(f["meta/losses"].attrs)
    return data


def test_delays_equal_extra_frame_by_frame(root, out):
    run = RunDirectory(str(run_path(root, PROPOSAL, RUN)))
    pulses = XrayPulses(run, source="SCS_RR_UTC/TSYS/TIMESERVER:outputBunchPattern", sase=3)
    extra = OpticalLaserDelay(run, pulses=pulses, stage=DELAY_STAGE, trigger=DELAY_TRIGGER, bam=DELAY_BAM,
                              ref_stage=TIMING.time_zero_mm, ref_trigger=TIMING.trigger_ps,
                              ref_bam=TIMING.bam_offset_fs)
    by_source = extra.delays_by_source(by_pulse=True)
    total = extra.total_delays(by_pulse=True)
    keys = list(zip(out["trainId"].tolist(), out["pulses/slot"].tolist()))
    index = {(int(t), int(p)): i for i, (t, p) in enumerate(by_source.index)}
    rows = np.array([index[k] for k in keys])
    assert len(rows) == len(out["trainId"]) == len(by_source)
    stage, trigger, bam = (by_source[c].to_numpy()[rows] for c in ("stage", "trigger", "bam"))
    np.testing.assert_allclose(out["delay/stage"], stage, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["delay/trigger"], trigger, rtol=0, atol=1e-9)
    ok = out["delay/bam_valid"]
    # EXtra keeps the BAM in float32: agree to 1e-4 fs relative to readings of ~1 ps
    np.testing.assert_allclose(out["delay/bam"][ok], bam[ok], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["delay/total"][ok], total.to_numpy()[rows][ok], rtol=0, atol=1e-6)
    # the frames EXtra gives NaN (planted NaN readings) are flagged here, and so are the bamError trains
    assert np.all(~ok[~np.isfinite(bam)])
    assert np.isnan(out["delay/total"][~ok]).all() and not out["delay/valid"][~ok].any()
    assert out["units"]["total"] == "ps" and out["units"]["stage_position"] == "mm"


def test_delays_equal_planted_truth(root, out):
    truth = read_truth(root, PROPOSAL, RUN)
    order = np.lexsort((truth["frame_pulse_id"], truth["frame_train_id"]))
    planted, planted_valid = truth["frame_delay_ps"][order], truth["frame_bam_valid"][order]
    np.testing.assert_array_equal(out["delay/bam_valid"], planted_valid)
    ok = planted_valid
    np.testing.assert_allclose(out["delay/total"][ok], planted[ok], atol=1e-5)
    # what the flags caught: the planted error train and the planted NaN readings
    tids = out["trainId"]
    error_train = truth["train_ids"][TIMING.bam_error_trains[0]]
    assert not out["delay/bam_valid"][tids == error_train].any()
    assert (~ok).sum() == (tids == error_train).sum() + TIMING.bam_nan_frames
    assert out["losses"]["nan delay/total"] == (~ok).sum()  # reported, not silent
    # the BAM matters: without it the delay is off by the planted jitter
    assert np.std(out["delay/stage"][ok] - planted[ok]) > 0.5 * TIMING.bam_jitter_fs * 1e-3


def test_scan_steps_with_backlash(root, out):
    truth = read_truth(root, PROPOSAL, RUN)
    backlash = truth["stage_backlash"]
    with h5py.File(root / "out" / f"r{RUN:04d}.h5", "r") as f:
        values = f["UserDataCfg/point_data/delay/step_values"][()]
        n_backlash = int(f["UserDataCfg/point_data/delay"].attrs["n_backlash_trains"])
    np.testing.assert_allclose(values, TIMING.stage_steps_mm)
    assert n_backlash == backlash.sum() == len(TIMING.stage_steps_mm) - 1
    tids = out["trainId"]
    train_step = np.array([out["delay/step"][tids == t][0] for t in truth["train_ids"]])
    assert np.all(train_step[backlash] == -1)
    expected = np.cumsum(~backlash & np.r_[True, truth["stage_target_mm"][1:] != truth["stage_target_mm"][:-1]]) - 1
    np.testing.assert_array_equal(train_step[~backlash], expected[~backlash])
    nominal = stage_to_ps(np.asarray(TIMING.stage_steps_mm), TIMING.time_zero_mm)
    np.testing.assert_allclose(np.unique(out["delay/step_delay"][out["delay/step"] >= 0]), np.sort(nominal))


def test_steps_by_clustering_the_actual_position():
    rng = np.random.default_rng(3)
    target = np.repeat([3.0, 2.0, 2.0, 1.0], [3, 1, 4, 5]).astype(float)
    target[3] = 1.95  # descending scan: the move to 2.0 overshoots to 1.95 and approaches 2.0 from below
    actual = target + rng.normal(0, 1e-4, len(target))
    by_target = find_steps(actual, target, tolerance=0.01, min_trains=2)
    by_actual = find_steps(actual, None, tolerance=0.01, min_trains=2)
    for steps in (by_target, by_actual):
        np.testing.assert_allclose(steps.values, [3.0, 2.0, 1.0], atol=1e-3)
        np.testing.assert_array_equal(steps.step, [0, 0, 0, -1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
        np.testing.assert_array_equal(np.flatnonzero(steps.backlash), [3])
    # an unsettled train inside a step is not labelled
    actual[6] += 0.05
    assert find_steps(actual, target, tolerance=0.01).step[6] == -1


def _producer_error(root, name, **delay_changes):
    from smalldata.pipeline.eventloop import run_producer

    cfg = config_dict(root)
    cfg["delay"].update(delay_changes)
    for k in [k for k, v in delay_changes.items() if v is None]:
        del cfg["delay"][k]
    config = write_config(root, name, cfg)
    with pytest.raises((DataError, ConfigError)) as err:
        run_producer(config, RUN, output=root / "out" / f"{name}.h5", max_trains=4)
    return str(err.value)


def test_bad_delay_input_ends_in_one_line(root, capsys):
    msg = _producer_error(root, "bad_bam_source", bam_source="SCS_ILH_LAS/DOOCS/BAM_1932M:output")
    assert "delay.bam_source" in msg and "BAM_1932M" in msg and "\n" not in msg
    msg = _producer_error(root, "bad_bam_length", bam_entries_per_slot=16)
    assert "delay.bam_entries_per_slot" in msg and "entries per train" in msg
    with pytest.raises(ConfigError) as err:
        cfg = config_dict(root)
        del cfg["delay"]["time_zero"]
        write_config(root, "no_t0", cfg)
    assert "delay.time_zero" in str(err.value) and "required" in str(err.value)
    with pytest.raises(ConfigError) as err:
        write_config(root, "no_pulses", {k: v for k, v in config_dict(root).items() if k not in ("pulses", "pattern")})
    assert "delay.bam_source" in str(err.value) and "pulses" in str(err.value)
    # the command line: one line, exit status 2
    from smalldata.cli.smd_producer import main

    capsys.readouterr()
    status = main(["-r", str(RUN), "-c", str(root / "bad_bam_source.yaml"), "--output", str(root / "cli.h5"),
                   "--max-trains", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "delay.bam_source" in err[0], err


@pytest.mark.mpi
def test_delays_and_two_variable_cube_identical_on_two_ranks(root, tmp_path):
    import subprocess

    from helpers import mpiexec, read_all, tool

    two = tmp_path / "two.h5"
    result = subprocess.run(mpiexec(2) + [tool("smd_producer"), "-r", str(RUN), "-c", str(root / "timing.yaml"),
                                          "--output", str(two), "--batch-size", "12", "--quiet"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    a, b = read_all(root / "out" / f"r{RUN:04d}.h5"), read_all(two)
    assert a.keys() == b.keys() and any(k.startswith("delay/") for k in a) and "Sums/dssc_cube/axis1_centres" in a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
