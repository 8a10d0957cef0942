"""Each run's state from the submissions record, the queue SLURM reports and the outputs (the
queue given as squeue would list it; the submit tests use the real SLURM)."""
from __future__ import annotations

import os
import shutil

from beamtime_helpers import PROPOSAL, RUNS, shared_range

from smalldata.beamtime.fingerprint import config_fingerprint
from smalldata.beamtime.jobstate import JobRecord, last_error_line, run_states


def _folder(tmp_path, produced, runs):
    """An output folder holding the shared outputs of ``runs`` (hard links)."""
    out = tmp_path / "out"
    out.mkdir()
    for run in runs:
        os.link(produced["out"] / f"r{run:04d}.h5", out / f"r{run:04d}.h5")
    return out


def test_states_from_record_queue_and_outputs(tmp_path_factory, tmp_path):
    produced = shared_range(tmp_path_factory)
    current = config_fingerprint(produced["config"], PROPOSAL)
    out = _folder(tmp_path, produced, RUNS[:1])
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / "run_7_2.log").write_text("smd_submit: run 700\nINFO smalldata: reading\n"
                                         "smd_producer: error: config pulses: run r0700 has no bunch pattern\n")
    runs = [RUNS[0], 698, 699, 700, 701]
    with JobRecord(out).update() as record:
        for task, run in enumerate(runs[1:4]):
            record["runs"][str(run)] = {"job": f"7_{task}", "array": "7", "fingerprint": current,
                                        "log": str(log_dir / f"run_7_{task}.log")}
    queue = {"7_0": "PENDING", "7_1": "RUNNING"}
    states = {st.run: st for st in run_states(runs, out, current, queue)}
    assert states[RUNS[0]].state == "done" and states[RUNS[0]].fingerprint == current
    assert (states[698].state, states[698].job) == ("queued", "7_0")
    assert (states[699].state, states[699].job) == ("running", "7_1")
    assert states[700].state == "failed"
    assert states[700].detail == "smd_producer: error: config pulses: run r0700 has no bunch pattern"
    assert (states[701].state, states[701].job) == ("new", "")
    # an output of another config is outdated; one the submitted job should have replaced is failed
    assert run_states([RUNS[0]], out, "f" * 16)[0].state == "outdated"
    with JobRecord(out).update() as record:
        record["runs"][str(RUNS[0])] = {"job": "8_0", "array": "8", "fingerprint": "f" * 16,
                                        "log": str(log_dir / "missing.log")}
    failed = run_states([RUNS[0]], out, "f" * 16)[0]
    assert failed.state == "failed" and "without a log" in failed.detail


def test_partial_output_and_last_error_line(tmp_path_factory, tmp_path):
    import h5py

    produced = shared_range(tmp_path_factory)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(produced["out"] / f"r{RUNS[1]:04d}.h5", out / f"r{RUNS[1]:04d}.h5")
    with h5py.File(out / f"r{RUNS[1]:04d}.h5", "a") as f:
        f["meta"].attrs["command"] = f"smd_producer -r {RUNS[1]} -c producer.yaml --max-trains 2"
    current = config_fingerprint(produced["config"], PROPOSAL)
    assert run_states([RUNS[1]], out, current)[0].state == "partial"
    log = tmp_path / "job.log"
    log.write_text("start\nsomething\n\n")
    assert last_error_line(log) == "something"
    log.write_text("start\nTraceback (most recent call last):\n  File x\nValueError: bad\n")
    assert last_error_line(log) == "ValueError: bad"
    log.write_text("INFO progress\nslurmstepd: error: *** JOB 5 ON vm CANCELLED AT 2026-12-06T15:00:00 DUE TO TIME "
                   "LIMIT ***\n")
    assert "DUE TO TIME LIMIT" in last_error_line(log)
    assert last_error_line(tmp_path / "none.log") == ""
