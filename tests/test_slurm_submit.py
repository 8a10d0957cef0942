"""smd_submit against a real single-node SLURM (tests/services/slurm.sh): sbatch arrays of tiny
simulated runs, the dark first, skip by fingerprint, reprocessing, failure and resubmission, and
--max-concurrent checked from SLURM's own records of the array tasks."""
from __future__ import annotations

import datetime
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
from beamtime_helpers import (DARK_RUN, MISSING_MODULE_RUN, PROPOSAL, RUNS, run_cli, simulate_range, start_slurm,
                              stop_slurm, write_config)

from smalldata.beamtime.fingerprint import output_fingerprint
from smalldata.beamtime.jobstate import JobRecord
from smalldata.simulate import read_truth, run_path

pytestmark = pytest.mark.slow
RANGE = f"{RUNS[0]}-{RUNS[-1]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The environment of a command that talks to the test SLURM."""
    folder = tmp_path_factory.mktemp("slurm")
    conf = start_slurm(folder)
    env = dict(os.environ, SLURM_CONF=conf)
    yield env
    stop_slurm(folder)


@pytest.fixture(scope="module")
def beamtime(tmp_path_factory, cluster):
    """Three runs (one lacking a module file) and a dark, submitted once with --max-concurrent 1."""
    tmp = tmp_path_factory.mktemp("beamtime")
    root = simulate_range(tmp / "data")
    config = write_config(tmp / "producer.yaml", root, tmp / "out", tmp / "calib")
    first = run_cli(["smd_submit", "-r", RANGE, "-c", config, "--max-concurrent", "1", "--wait",
                     "--wait-data", "60"], env=cluster)
    return {"tmp": tmp, "root": root, "config": config, "out": tmp / "out", "first": first}


def _states(stdout: str) -> dict:
    """run -> (state, job, fingerprint, detail) from smd_submit's table."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4 and parts[0].isdigit():
            rows[int(parts[0])] = (parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else "")
    return rows


def _task_records(array_job: str, env) -> list:
    """SLURM's records (scontrol) of every task of an array: dicts of their fields."""
    out = subprocess.run(["scontrol", "-o", "show", "job", array_job], capture_output=True, text=True, env=env,
                         check=True).stdout
    records = []
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("ArrayJobId") == array_job and fields.get("ArrayTaskId", "").isdigit():
            records.append(fields)
    return records


def test_first_submit_processes_the_range_with_its_dark(beamtime):
    first = beamtime["first"]
    assert first.returncode == 0, first.stderr
    states = _states(first.stdout)
    assert sorted(states) == list(RUNS)
    assert {s[0] for s in states.values()} == {"done"}
    assert (beamtime["tmp"] / "calib" / f"dark_p{PROPOSAL:06d}_r{DARK_RUN:04d}_dssc.h5").is_file()
    for run in RUNS:
        truth = read_truth(beamtime["root"], PROPOSAL, run)
        with h5py.File(beamtime["out"] / f"r{run:04d}.h5", "r") as f:
            assert f["trainId"].shape[0] == len(truth["frame_train_id"])
            np.testing.assert_array_equal(f["trainId"][()], truth["frame_train_id"])
            incomplete = f["meta/losses"].attrs["incomplete_pairs"]
        # module 3 of the run without its second sequence file lacks trains 3..5
        assert incomplete == (3 if run == MISSING_MODULE_RUN else 0)


def test_max_concurrent_is_honoured_in_slurms_records(beamtime, cluster):
    job = _states(beamtime["first"].stdout)[RUNS[0]][1].split("_")[0]
    records = _task_records(job, cluster)
    assert len(records) == len(RUNS)
    assert {r["ArrayTaskThrottle"] for r in records} == {"1"}
    spans = sorted((datetime.datetime.fromisoformat(r["StartTime"]), datetime.datetime.fromisoformat(r["EndTime"]))
                   for r in records)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"tasks overlapped: one started at {start}, the previous ended at {end}"
    # the array waited for the dark job: no task started before the dark had ended
    dark_job = JobRecord(beamtime["out"]).read()["darks"][str(DARK_RUN)]["job"]
    out = subprocess.run(["scontrol", "-o", "show", "job", dark_job], capture_output=True, text=True, env=cluster,
                         check=True).stdout
    dark = dict(item.split("=", 1) for item in out.split() if "=" in item)
    assert dark["JobState"] == "COMPLETED"
    assert datetime.datetime.fromisoformat(dark["EndTime"]) <= spans[0][0]


def test_second_submit_skips_every_run(beamtime, cluster):
    before = {run: (beamtime["out"] / f"r{run:04d}.h5").stat().st_mtime_ns for run in RUNS}
    again = run_cli(["smd_submit", "-r", RANGE, "-c", beamtime["config"], "--wait"], env=cluster)
    assert again.returncode == 0, again.stderr
    assert "submitted" not in again.stdout
    for run in RUNS:
        assert f"run {run}: skipped, done with the same config and dark" in again.stdout
        assert (beamtime["out"] / f"r{run:04d}.h5").stat().st_mtime_ns == before[run]


def test_config_change_reprocesses_a_failure_is_reported_and_a_resubmit_fixes_it(beamtime, cluster):
    old = {run: output_fingerprint(beamtime["out"] / f"r{run:04d}.h5") for run in RUNS}
    write_config(beamtime["config"], beamtime["root"], beamtime["out"], beamtime["tmp"] / "calib", xgm_min=650.0)
    broken = run_path(beamtime["root"], PROPOSAL, RUNS[2])
    hidden = beamtime["tmp"] / "hidden"
    hidden.mkdir()
    for path in broken.glob("*-DA01-*.h5"):  # the bunch pattern, XGM and delay of the last run
        shutil.move(str(path), hidden / path.name)
    changed = run_cli(["smd_submit", "-r", RANGE, "-c", beamtime["config"], "--wait", "--wait-data", "60"],
                      env=cluster)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert f"submitted {len(RUNS)} run(s)" in changed.stdout
    states = _states(changed.stdout)
    for run in RUNS[:2]:
        assert states[run][0] == "done"
        new = output_fingerprint(beamtime["out"] / f"r{run:04d}.h5")
        assert new == states[run][2] and new != old[run]
    state, _, _, detail = states[RUNS[2]]
    assert state == "failed"
    assert detail.startswith("smd_producer: error:") and "bunchPattern" in detail
    for path in hidden.iterdir():
        shutil.move(str(path), broken / path.name)
    fixed = run_cli(["smd_submit", "-r", RANGE, "-c", beamtime["config"], "--partition", "upex", "--wait"],
                    env=cluster)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "submitted 1 run(s)" in fixed.stdout
    states = _states(fixed.stdout)
    records = _task_records(states[RUNS[2]][1].split("_")[0], cluster)
    assert [r["Partition"] for r in records] == ["upex"]
    assert {s[0] for s in states.values()} == {"done"}
    assert len({s[2] for s in states.values()}) == 1
    with h5py.File(beamtime["out"] / f"r{RUNS[2]:04d}.h5", "r") as f:
        assert f["UserDataCfg/frames/rejection"].attrs["xgm_min"] == 650.0


def test_force_into_a_reservation(beamtime, cluster):
    def scontrol(*args):
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, env=cluster, check=True)

    scontrol("create", "reservation", "reservationname=upex_002937", "starttime=now", "duration=30", "users=root",
             "nodes=ALL", "flags=ignore_jobs")
    try:
        forced = run_cli(["smd_submit", "-r", str(RUNS[0]), "-c", beamtime["config"], "--force",
                          "--reservation", "upex_002937", "--wait"], env=cluster)
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "submitted 1 run(s)" in forced.stdout
        state, job, _, _ = _states(forced.stdout)[RUNS[0]]
        # SLURM names a job's reservation in its record while the reservation exists
        records = _task_records(job.split("_")[0], cluster)
    finally:
        scontrol("delete", "reservation=upex_002937")
    assert state == "done"
    assert [r.get("Reservation") for r in records] == ["upex_002937"]
