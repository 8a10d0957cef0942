"""The supervising parent of a rank, in this process against a forked child (no MPI)."""
import logging
import os
import signal
import time

from smalldata.parallel.activity import FINISHED, ActivityRecord
from smalldata.parallel.supervisor import Supervisor


def child(record: ActivityRecord, steps) -> int:
    """Fork a child that runs ``steps`` (callables) then ends as the last one says; returns its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            for step in steps:
                step()
        finally:
            os._exit(0)
    return pid


def test_stall_then_hard_death_named(tmp_path, caplog):
    temporary = tmp_path / ".r0614.h5.parts"
    temporary.mkdir()
    (temporary / "part_00001.h5").write_bytes(b"x")
    record = ActivityRecord(stall_timeout=0.5)
    pid = child(record, [lambda: record.set_temporaries((str(temporary),)),
                         lambda: record.note("in function detectors.dssc.functions[0] (m:F)", 1000000007),
                         lambda: time.sleep(1.5),  # frozen for three stall timeouts
                         lambda: record.note(train=1000000008),
                         lambda: time.sleep(0.3),
                         lambda: os._exit(3)])
    with caplog.at_level(logging.WARNING, logger="smalldata.parallel.supervisor"):
        t0 = time.monotonic()
        status = Supervisor(pid, record, 1, "smd_producer").watch()
    assert status == 3
    assert time.monotonic() - t0 < 10
    stalls = [r.getMessage() for r in caplog.records if "has made no progress" in r.getMessage()]
    assert len(stalls) == 1, caplog.text
    assert "rank 1 has made no progress for" in stalls[0] and "on train 1000000007" in stalls[0], stalls
    seconds = float(stalls[0].split("no progress for ")[1].split(" s")[0])
    assert 0.5 <= seconds <= 1.5, stalls
    assert "rank 1 is making progress again" in caplog.text
    deaths = [r.getMessage() for r in caplog.records if "without finishing" in r.getMessage()]
    assert len(deaths) == 1 and f"rank 1 (pid {pid}) exited with status 3" in deaths[0], caplog.text
    assert "last on train 1000000008" in deaths[0] and "(m:F)" in deaths[0], deaths
    assert not temporary.exists()


def test_clean_end_passes_the_status_through(tmp_path, caplog):
    record = ActivityRecord(stall_timeout=30.0)
    pid = child(record, [lambda: record.note("in function f", 5), lambda: record.set_state(FINISHED),
                         lambda: os._exit(143)])
    with caplog.at_level(logging.WARNING, logger="smalldata.parallel.supervisor"):
        assert Supervisor(pid, record, 0, "smd_producer").watch() == 143
    assert caplog.records == []


def test_killed_child_and_exit_zero_without_finishing(caplog):
    record = ActivityRecord()
    pid = child(record, [lambda: record.note("reading", 9), lambda: os.kill(os.getpid(), signal.SIGKILL)])
    with caplog.at_level(logging.WARNING, logger="smalldata.parallel.supervisor"):
        assert Supervisor(pid, record, 2, "smd_producer").watch() == 128 + signal.SIGKILL
    assert "rank 2" in caplog.text and "was killed by SIGKILL" in caplog.text
    record = ActivityRecord()
    pid = child(record, [lambda: record.note("reading", 9), lambda: os._exit(0)])
    assert Supervisor(pid, record, 2, "smd_producer").watch() == 1  # ended without finishing: never 0


def test_signal_to_the_parent_is_passed_on():
    """A SIGTERM to the supervising process reaches a child that did not get it itself."""
    record = ActivityRecord()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        signal.signal(signal.SIGTERM, lambda s, f: (os.write(write_end, b"T"), os._exit(143)))
        record.note("waiting", 1)
        record.set_state(FINISHED)
        time.sleep(20)
        os._exit(0)
    os.close(write_end)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        alarm = signal.signal(signal.SIGALRM, lambda s, f: os.kill(os.getpid(), signal.SIGTERM))
        try:
            status = Supervisor(pid, record, 0, "smd_producer").watch()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, alarm)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    got = os.read(read_end, 1)
    os.close(read_end)
    assert status == 143 and got == b"T", (status, got)
