"""Signals and failures end every rank in every phase: no hang, no half-written or unreported output.

A slow user function stretches the processing phase; the same test-only function, loaded by the
config, stretches rank 0's merge (it wraps the event loop's merge in a wait that polls like the merge); the signal goes to rank 0, rank 1 or mpiexec. Outcome: the job ends within 30 s, with a
non-zero exit status and no final file, or exit status 0 and a complete file; no temporaries.
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest
from faults import fault_config
from helpers import DATA_RUN, mpiexec, tool

SLOW_FUNC = '''
import os, sys, time
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc

def slow_merge(merge, delay):
    """``merge`` preceded by ``delay`` seconds of waiting that calls its ``poll`` as the merge does."""
    def slow(parts, out, poll=None, **rows):
        end = time.monotonic() + delay
        while time.monotonic() < end:
            if poll is not None:
                poll()
            time.sleep(0.05)
        return merge(parts, out, poll=poll, **rows)
    return slow

class Slow(DetObjectFunc):
    def __init__(self, name: str = "slow", sleep: float = 0.0, exit_on_rank: int = -1, merge_delay: float = 0.0):
        super().__init__(name)
        self.sleep = sleep
        self.exit_on_rank = exit_on_rank
        self.merge_delay = merge_delay
        if merge_delay > 0:
            from smalldata.pipeline import eventloop
            eventloop.merge_parts = slow_merge(eventloop.merge_parts, merge_delay)
        rank = os.environ.get("PMI_RANK", "0")
        with open(os.path.join(os.environ["PID_DIR"], f"rank{rank}"), "w") as f:
            f.write(str(os.getpid()))
    def process(self, frames):
        time.sleep(self.sleep)
        if int(os.environ.get("PMI_RANK", "0")) == self.exit_on_rank:
            sys.exit(3)
        return {"n": np.ones(len(frames), np.int32)}
'''

# each target and each signal in both phases, in six runs
CASES = [("rank0", "SIGTERM", "merge"), ("rank0", "SIGINT", "processing"),
         ("rank1", "SIGTERM", "processing"), ("rank1", "SIGINT", "merge"),
         ("mpiexec", "SIGTERM", "merge"), ("mpiexec", "SIGINT", "processing")]


def start(tmp_path, sim_root, calib_dir, phase, sleep=0.0, exit_on_rank=-1, ranks=2):
    (tmp_path / "slowmod.py").write_text(SLOW_FUNC)
    (tmp_path / "pids").mkdir()
    func = {"type": "slowmod:Slow", "sleep": sleep, "exit_on_rank": exit_on_rank,
            "merge_delay": 60.0 if phase == "merge" else 0.0}
    cfg = fault_config(tmp_path, sim_root, calib_dir, functions=[
        {"type": "roi", "name": "m2", "module": 2, "roi": [0, 128, 0, 512]}, func])
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PID_DIR=str(tmp_path / "pids"))
    return subprocess.Popen(mpiexec(ranks) + [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg),
                                              "--batch-size", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def check_outcome(proc, out: Path, sent_at: float):
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the job did not end within 30 s of the signal")
    assert time.monotonic() - sent_at < 30
    final = out / f"r{DATA_RUN:04d}.h5"
    if proc.returncode == 0:
        with h5py.File(final) as f:
            assert "meta" in f and len(f["trainId"]) > 0
        assert names(out) == [final.name]
    else:
        assert names(out) == [], names(out)
    assert "Traceback" not in stderr
    return proc.returncode, stderr


def reached(folder: Path, phase: str) -> bool:
    """Whether the run in ``folder`` is merging (rank 0's hidden output file exists) or processing
    (both ranks' part files exist)."""
    out = folder / "out"
    if phase == "merge":
        return any(n.endswith(".partial") for n in names(out))
    parts = [p for p in out.glob(".*.parts")] if out.exists() else []
    return bool(parts) and len(names(parts[0])) == 2 and len(names(folder / "pids")) == 2


@pytest.mark.mpi
def test_signals_in_every_phase(tmp_path, sim_root, calib_dir):
    """The six cases run side by side (most of their time is waiting), each in its own folder."""
    runs = {}
    for target, signame, phase in CASES:
        folder = tmp_path / f"{target}_{signame}_{phase}"
        folder.mkdir()
        runs[(target, signame, phase)] = (folder, start(folder, sim_root, calib_dir, phase,
                                                        sleep=0.5 if phase == "processing" else 0.0))
    sent = {}
    end = time.monotonic() + 120
    while len(sent) < len(runs) and time.monotonic() < end:
        for (target, signame, phase), (folder, proc) in runs.items():
            if (target, signame, phase) not in sent and reached(folder, phase):
                pid = proc.pid if target == "mpiexec" else int((folder / "pids" / target).read_text())
                os.kill(pid, getattr(signal, signame))
                sent[(target, signame, phase)] = time.monotonic()
        time.sleep(0.02)
    results = {case: check_outcome(proc, folder / "out", sent.get(case, time.monotonic()))
               for case, (folder, proc) in runs.items()}
    assert set(sent) == set(runs), f"runs never reached their phase: {set(runs) - set(sent)}"
    for case, (status, stderr) in results.items():
        # every case stops the run: the signal arrives long before the end of processing or merge
        assert status != 0, (case, stderr)
        assert "interrupted by" in stderr and "no output written" in stderr, (case, stderr)


@pytest.mark.mpi
def test_system_exit_on_one_rank_stops_all(tmp_path, sim_root, calib_dir):
    proc = start(tmp_path, sim_root, calib_dir, "processing", exit_on_rank=1)
    status, stderr = check_outcome(proc, tmp_path / "out", time.monotonic())
    assert status == 2 and "rank 1: function detectors.dssc.functions[1] (slowmod:Slow)" in stderr, stderr
    assert "SystemExit: 3" in stderr, stderr


def test_dark_stopped_by_a_signal_leaves_nothing(tmp_path, sim_root):
    from helpers import DARK_RUN, PROPOSAL

    calib = tmp_path / "calib"
    proc = subprocess.Popen([tool("smd_dark"), "-p", str(PROPOSAL), "-r", str(DARK_RUN), "--data-root", str(sim_root),
                             "--calib-dir", str(calib), "--chunk-frames", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while time.monotonic() < end and not any(n.endswith(".partial") for n in names(calib)):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    assert names(calib) == []
