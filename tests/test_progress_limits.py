"""function_time_limit ends a run in one line; what a rank does is kept for its supervisor."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml
from faults import fault_config
from helpers import DATA_RUN, Spin, tool

from smalldata.errors import FunctionError
from smalldata.parallel import activity, timelimit
from smalldata.parallel.activity import FINISHED, RUNNING, STARTING, ActivityRecord
from smalldata.pipeline.chain import run_function
from smalldata.testing import make_frames as _make_frames


def make_frames(n: int):
    """``n`` small crop frames of trains 1000001...: what a function sees."""
    return _make_frames(np.zeros((n, 4, 4), np.float32), train_ids=np.arange(1000001, 1000001 + n, dtype=np.uint64))


SLOW_FUNC = '''
import time
import numpy as np
from smalldata.plugin.detfunc import DetObjectFunc

class Busy(DetObjectFunc):
    def __init__(self, name: str = "busy", seconds: float = 0.0):
        super().__init__(name)
        self.seconds = seconds
    def process(self, frames):
        if frames.train_ids[0] >= 1000:  # the run's batches, not the synthetic ones of the set-up's dry run
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:  # busy, not sleeping: the limit must stop Python code anywhere
                pass
        return {"n": np.ones(len(frames), np.int32)}
'''




def test_time_limit_names_function_detector_train():
    func = Spin(seconds=30.0)
    func.config_path = "detectors.dssc.functions[1]"
    frames = make_frames(n=3)
    timelimit.set_limit(0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(FunctionError) as info:
            run_function(func, frames)
        took = time.monotonic() - t0
    finally:
        timelimit.set_limit(None)
    assert 0.3 <= took < 5.0, took
    message = str(info.value)
    assert "detectors.dssc.functions[1]" in message and f"{Spin.__module__}:Spin" in message, message
    assert "of detector dssc" in message and "function_time_limit (0.3 s)" in message, message
    assert f"{frames.train_ids[0]}" in message and "process()" in message, message
    assert "raise function_time_limit" in message and "\n" not in message, message
    assert signal.getsignal(signal.SIGALRM) is not timelimit._expired  # the handler before is back
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_within_the_limit_no_error():
    func = Spin(seconds=0.05)
    frames = make_frames(n=2)
    timelimit.set_limit(2.0)
    try:
        out = run_function(func, frames)
    finally:
        timelimit.set_limit(None)
    assert np.array_equal(out["spin_n"], np.ones(2, np.int32)), out
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_activity_record_round_trip():
    record = ActivityRecord(stall_timeout=7.0)
    snap = record.read()
    assert snap.state == STARTING and snap.train is None and snap.stall_timeout == 7.0 and snap.signal == 0
    before = time.monotonic()
    record.note("in function x", 1000042)
    snap = record.read()
    assert snap.state == RUNNING and snap.train == 1000042 and snap.doing == "in function x"
    assert before <= snap.heartbeat <= time.monotonic()
    record.note()  # progress keeps what it was doing
    assert record.read().doing == "in function x" and record.read().train == 1000042
    record.note_signal(15)
    record.note_signal(2)
    record.set_temporaries(("/tmp/a", "/tmp/b c"))
    record.set_stall_timeout(3.5)
    record.set_state(FINISHED)
    snap = record.read()
    assert snap.signal == 15 and snap.temporaries == ("/tmp/a", "/tmp/b c") and snap.stall_timeout == 3.5
    assert snap.state == FINISHED
    activity.attach(None)
    activity.note("nothing happens without a record")


def test_record_is_shared_with_a_child_process():
    record = ActivityRecord()
    pid = os.fork()
    if pid == 0:
        try:
            record.note("child", 77)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert record.read().train == 77 and record.read().doing == "child"


def test_function_time_limit_ends_a_run(tmp_path, sim_root, calib_dir):
    """A whole run, one rank: the function spins 30 s per batch, the limit is 1 s: exit 2, one line, no output."""
    (tmp_path / "busymod.py").write_text(SLOW_FUNC)
    cfg = fault_config(tmp_path, sim_root, calib_dir, functions=[{"type": "busymod:Busy", "seconds": 30.0}],
                       extra=lambda c: c.update(function_time_limit=1.0))
    assert yaml.safe_load(cfg.read_text())["function_time_limit"] == 1.0
    t0 = time.monotonic()
    proc = subprocess.run([tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(cfg)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 60
    lines = [line for line in proc.stderr.splitlines() if "function_time_limit" in line]
    assert len(lines) == 1, proc.stderr
    assert "detectors.dssc.functions[0] (busymod:Busy)" in lines[0] and "of detector dssc" in lines[0], lines
    assert "(1 s)" in lines[0] and "train" in lines[0] and "raise function_time_limit" in lines[0], lines
    assert "Traceback" not in proc.stderr
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []
