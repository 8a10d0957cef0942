"""Signals stop a user function stuck in an endless loop; a rank that dies hard is named.

Real processes under ``mpiexec -n 2``: a test-only function loops for ever (``while True:
pass``) in ``process`` or in ``__init__``, on every rank; SIGTERM or SIGINT goes to
mpiexec (which passes it on, as Ctrl-C does) or to the ranks (as ``scancel`` does). The
run must end within 30 s with the shell's status for the signal, one line naming the
function it interrupted, no temporary files and none of the run's /dev/shm segments left.
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faults import fault_config
from helpers import DATA_RUN, PROPOSAL, mpiexec, tool

from smalldata.simulate import read_truth

LOOP_FUNC = '''
import inspect, os, time
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc

def mark(what):
    rank = os.environ.get("PMI_RANK", "0")
    with open(os.path.join(os.environ["MARK_DIR"], f"{what}{rank}"), "w") as f:
        f.write(str(os.getpid()))

def dying_merge(merge):
    """``merge`` that ends the process hard once the output file is open."""
    def die(parts, out, poll=None, **rows):
        mark("merging")
        os._exit(3)
    return die

class Loop(DetObjectFunc):
    def __init__(self, name: str = "loop", where: str = "process", exit_on_rank: int = -1, sleep: float = 0.0,
                 called_from: str = ""):
        super().__init__(name)
        self.where = where
        self.exit_on_rank = exit_on_rank
        self.sleep = sleep
        self.called_from = called_from
        mark("pid")
        if where == "merge":
            from smalldata.pipeline import eventloop
            eventloop.merge_parts = dying_merge(eventloop.merge_parts)
        # functions are built when the config is read (from_file) and again when the run sets up
        if where == "init" and any(f.function == called_from for f in inspect.stack()):
            mark("looping")
            while True:
                pass
    def process(self, frames):
        if frames.train_ids[0] < 1000:  # the synthetic batches of the set-up's dry run
            return {"n": np.ones(len(frames), np.int32)}
        mark("processing")
        if self.where == "process":
            mark("looping")
            while True:
                pass
        if int(os.environ.get("PMI_RANK", "0")) == self.exit_on_rank:
            os._exit(3)
        time.sleep(self.sleep)
        return {"n": np.ones(len(frames), np.int32)}
'''


def start(folder: Path, sim_root, calib_dir, ranks=2, extra_args=(), extra=None, **func):
    """smd_producer on the small run with the loop function; returns the process."""
    (folder / "loopmod.py").write_text(LOOP_FUNC)
    (folder / "marks").mkdir()
    cfg = fault_config(folder, sim_root, calib_dir, extra=extra, functions=[
        {"type": "roi", "name": "m2", "module": 2, "roi": [0, 128, 0, 512]}, {"type": "loopmod:Loop", **func}])
    env = dict(os.environ, PYTHONPATH=str(folder), MARK_DIR=str(folder / "marks"))
    cmd = [tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg), "--batch-size", "4", *extra_args]
    return subprocess.Popen((mpiexec(ranks) if ranks else []) + cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def marks(folder: Path, what: str) -> dict:
    """Rank -> pid of the marks ``what<rank>`` written so far."""
    out = {}
    for p in (folder / "marks").glob(f"{what}*"):
        rank = p.name[len(what):]
        if rank.isdigit() and p.read_text():
            out[int(rank)] = int(p.read_text())
    return out


def wait_for(condition, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def shm_segments(pids) -> set:
    """The /dev/shm files the processes ``pids`` map (MPI's intra-node segments)."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as maps:
                found |= {line.split(None, 5)[-1].strip() for line in maps if "/dev/shm/" in line}
        except OSError:
            pass
    return {p for p in found if not p.endswith("(deleted)")}


def finish(proc, timeout=30.0):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"the job did not end within {timeout} s: {stderr}")


def leftovers(folder: Path) -> list:
    out = folder / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


# where the loop is (process, or __init__ called from the named function), the signal, to whom, the phase named
CASES = [("process", "SIGTERM", "mpiexec", "on train"), ("process", "SIGINT", "ranks", "on train"),
         ("from_file", "SIGINT", "mpiexec", "while reading the config"),
         ("setup_detectors", "SIGTERM", "ranks", "while setting up the detectors")]


@pytest.mark.mpi
def test_endless_user_function_is_interrupted(tmp_path, sim_root, calib_dir):
    """The four cases side by side (most of their time is waiting), each in its own folder."""
    runs = {}
    for where, signame, target, phase in CASES:
        folder = tmp_path / f"{where}_{signame}_{target}"
        folder.mkdir()
        func = {"where": "process"} if where == "process" else {"where": "init", "called_from": where}
        runs[(where, signame, target, phase)] = (folder, start(folder, sim_root, calib_dir, **func))
    segments = {}
    assert wait_for(lambda: all(len(marks(f, "looping")) == 2 for f, _ in runs.values())), \
        {case: marks(f, "looping") for case, (f, _) in runs.items()}
    time.sleep(0.5)
    for (where, signame, target, phase), (folder, proc) in runs.items():
        pids = list(marks(folder, "looping").values())
        segments[(where, signame, target, phase)] = shm_segments(pids)
        for pid in ([proc.pid] if target == "mpiexec" else pids):
            os.kill(pid, getattr(signal, signame))
    for case, (folder, proc) in runs.items():
        where, signame, target, phase = case
        _, stderr = finish(proc)
        assert proc.returncode == 128 + getattr(signal, signame), (case, proc.returncode, stderr)
        assert f"interrupted by {signame}" in stderr and "no output written" in stderr, (case, stderr)
        method = "process" if where == "process" else "__init__"
        assert f"(loopmod:Loop).{method}" in stderr, (case, stderr)
        assert phase in stderr, (case, stderr)
        assert "Traceback" not in stderr, (case, stderr)
        assert leftovers(folder) == [], (case, leftovers(folder))
        assert segments[case], case  # the ranks did map MPI segments
        assert not [s for s in segments[case] if os.path.exists(s)], (case, segments[case])


@pytest.mark.mpi
def test_rank_dying_hard_is_named(tmp_path, sim_root, calib_dir):
    """``os._exit(3)`` on rank 1: one line naming rank 1 and its last train, non-zero status, nothing left."""
    proc = start(tmp_path, sim_root, calib_dir, where="none", exit_on_rank=1, sleep=0.2)
    assert wait_for(lambda: len(marks(tmp_path, "processing")) == 2 or proc.poll() is not None)
    segments = shm_segments(marks(tmp_path, "pid").values())
    _, stderr = finish(proc)
    assert proc.returncode != 0, stderr
    lines = [line for line in stderr.splitlines() if "rank 1 (pid" in line]
    assert len(lines) == 1, stderr
    assert "exited with status 3 without finishing" in lines[0] and "last on train" in lines[0], lines
    assert "(loopmod:Loop)" in lines[0], lines
    train = int(lines[0].split("last on train ")[1].split(",")[0])
    truth = read_truth(sim_root, PROPOSAL, DATA_RUN)["train_ids"]
    assert train in truth[1:], (train, truth)  # a train of the run, not rank 0's first
    assert wait_for(lambda: leftovers(tmp_path) == [], 10), leftovers(tmp_path)
    assert not [s for s in segments if os.path.exists(s)], segments


@pytest.mark.mpi
def test_rank_dying_in_the_merge_leaves_nothing(tmp_path, sim_root, calib_dir):
    """Rank 0 ends hard with the output's temporary file open: named, and the temporaries are removed."""
    proc = start(tmp_path, sim_root, calib_dir, where="merge")
    _, stderr = finish(proc, 120)
    assert proc.returncode != 0, stderr
    assert marks(tmp_path, "merging").keys() == {0}
    lines = [line for line in stderr.splitlines() if "rank 0 (pid" in line]
    assert len(lines) == 1 and "exited with status 3 without finishing" in lines[0], stderr
    assert "merging the part files" in lines[0], lines
    assert wait_for(lambda: leftovers(tmp_path) == [], 10), leftovers(tmp_path)


@pytest.mark.mpi
def test_frozen_rank_is_named(tmp_path, sim_root, calib_dir):
    """Rank 1 stopped (SIGSTOP) for longer than --stall-timeout while on a train is named with that train;
    the run then completes.

    (With a timeout of seconds, a slow set-up on a busy machine may be named too: only the warnings
    given while a rank was on a train count here.)
    """
    proc = start(tmp_path, sim_root, calib_dir, where="none", sleep=0.3, extra_args=["--stall-timeout", "3"])
    assert wait_for(lambda: len(marks(tmp_path, "processing")) == 2)
    pid = marks(tmp_path, "processing")[1]
    os.kill(pid, signal.SIGSTOP)
    time.sleep(7.0)
    os.kill(pid, signal.SIGCONT)
    _, stderr = finish(proc, 120)
    assert proc.returncode == 0, stderr
    lines = [line for line in stderr.splitlines() if "has made no progress for" in line and "on train" in line]
    assert len(lines) == 1 and "rank 1 has made no progress for" in lines[0], stderr
    seconds = float(lines[0].split("no progress for ")[1].split(" s")[0])
    assert 3 <= seconds <= 5, lines
    train = int(lines[0].split("on train ")[1].split(",")[0])
    assert 1_000_000_000 <= train < 1_000_000_100, lines  # a train of the simulated run
    assert "in function detectors.dssc.functions[1] (loopmod:Loop)" in lines[0], lines
    assert "rank 1 is making progress again" in stderr, stderr
    assert (tmp_path / "out" / f"r{DATA_RUN:04d}.h5").exists()
