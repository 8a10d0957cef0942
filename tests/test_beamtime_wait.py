"""Waiting for a run's files (smd_producer --wait): a run that appears later is processed, files
still being written or just changed are waited for, and a run that never completes ends in one line."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import h5py
import pytest
from beamtime_helpers import PROPOSAL, RUNS, characterise_tiny_dark, console, simulate_range, write_config

from smalldata.beamtime.waitfiles import wait_for_run_files
from smalldata.errors import DataError
from smalldata.simulate import read_truth, run_path


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """One tiny run and its dark simulated into a staging root, and the dark characterised."""
    tmp = tmp_path_factory.mktemp("wait")
    staging = simulate_range(tmp / "staging", runs=RUNS[:1])
    characterise_tiny_dark(staging, tmp / "calib")
    return {"tmp": tmp, "staging": staging}


def _age(folder, seconds: float) -> None:
    """Make every file of ``folder`` look last modified ``seconds`` ago."""
    then = time.time() - seconds
    for path in folder.iterdir():
        os.utime(path, (then, then))


def _arrive(staging, root, run: int, delay: float) -> threading.Thread:
    """After ``delay`` s, move the staged run into ``root`` in one rename (files a minute old)."""
    src, dst = run_path(staging, PROPOSAL, run), run_path(root, PROPOSAL, run)

    def move():
        time.sleep(delay)
        _age(src, 60)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)

    thread = threading.Thread(target=move)
    thread.start()
    return thread


def test_producer_waits_for_a_run_that_appears_later(staged):
    root = staged["tmp"] / "data"
    config = write_config(staged["tmp"] / "producer.yaml", root, staged["tmp"] / "out", staged["tmp"] / "calib")
    run = RUNS[0]
    start = time.monotonic()
    arrival = _arrive(staged["staging"], root, run, 3.0)
    # two ranks: rank 0 waits while the other sleeps in a non-blocking barrier
    result = subprocess.run([console("mpiexec"), "-n", "2", console("smd_producer"), "-r", str(run), "-c",
                             str(config), "--wait", "120"], capture_output=True, text=True, timeout=600)
    arrival.join()
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start >= 3.0
    truth = read_truth(staged["staging"], PROPOSAL, run)
    with h5py.File(staged["tmp"] / "out" / f"r{run:04d}.h5", "r") as f:
        assert (f["trainId"][()] == truth["frame_train_id"]).all()
        assert f["meta"].attrs["n_ranks"] == 2
    shutil.move(str(run_path(root, PROPOSAL, run)), run_path(staged["staging"], PROPOSAL, run))


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_run_that_never_completes_ends_in_one_line(staged, ranks):
    config = write_config(staged["tmp"] / "producer2.yaml", staged["tmp"] / "empty", staged["tmp"] / "out2",
                          staged["tmp"] / "calib")
    (staged["tmp"] / "empty").mkdir(exist_ok=True)
    result = subprocess.run([console("mpiexec"), "-n", str(ranks), console("smd_producer"), "-r", "699", "-c",
                             str(config), "--wait", "1", "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"smd_producer: error: run 699 of proposal {PROPOSAL}: its files are not complete after "
                     f"waiting 1 s: run 699 of proposal {PROPOSAL} not found: no directory "
                     f"{staged['tmp'] / 'empty'}/*/*/p{PROPOSAL:06d}/raw/r0699; wait longer (--wait SECONDS) or "
                     "check the run number"]


def test_files_still_being_written_are_waited_for(tmp_path):
    folder = run_path(tmp_path, PROPOSAL, 700)
    folder.mkdir(parents=True)
    writing = folder / "RAW-R0700-DA01-S00000.h5"
    with h5py.File(writing, "w") as f:
        f.create_group("METADATA")  # INDEX comes when the writer closes the file
    _age(folder, 60)
    with pytest.raises(DataError, match="RAW-R0700-DA01-S00000.h5 \\(no INDEX yet\\) is still being written"):
        wait_for_run_files(PROPOSAL, 700, tmp_path, timeout=0.5, poll=0.1)

    def finish():
        time.sleep(1.0)
        with h5py.File(writing, "a") as f:
            f.create_group("INDEX")

    thread = threading.Thread(target=finish)
    thread.start()
    start = time.monotonic()
    assert wait_for_run_files(PROPOSAL, 700, tmp_path, timeout=30, settle=1.0, poll=0.1) == folder
    thread.join()
    # the file changed when INDEX was added: the wait lasted until it had been quiet for `settle`
    assert time.monotonic() - start >= 1.9
    assert time.time() - writing.stat().st_mtime >= 1.0


def test_recently_changed_files_are_not_complete(tmp_path):
    folder = run_path(tmp_path, PROPOSAL, 701)
    folder.mkdir(parents=True)
    with h5py.File(folder / "RAW-R0701-DA01-S00000.h5", "w") as f:
        f.create_group("METADATA")
        f.create_group("INDEX")
    with pytest.raises(DataError, match="changed less than 30 s ago"):
        wait_for_run_files(PROPOSAL, 701, tmp_path, timeout=0.3, settle=30, poll=0.1)
    _age(folder, 60)
    assert wait_for_run_files(PROPOSAL, 701, tmp_path, timeout=0.3, settle=30, poll=0.1) == folder
