"""Waiting for a run's raw files to be complete before reading them (``smd_producer --wait``).

A run counts as complete when its directory holds raw files, no file was modified in the last
``settle`` seconds (files still being written or copied in would be), and every one of them
opens as HDF5 with its ``INDEX`` and ``METADATA`` (the European XFEL writer adds them when it
closes a file). The wait ends with a one-line error after ``timeout`` seconds.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import h5py

from smalldata.errors import DataError
from smalldata.parallel import activity

log = logging.getLogger(__name__)

#: Seconds without any change to a run's files before they count as complete.
DEFAULT_SETTLE_S = 10.0
#: Seconds between looks at the files.
DEFAULT_POLL_S = 2.0


def _snapshot(folder: Path) -> Dict[str, Tuple[int, int]]:
    """File name -> (size, mtime in ns) of the raw files of ``folder``."""
    out = {}
    for path in folder.glob("*.h5"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        out[path.name] = (st.st_size, st.st_mtime_ns)
    return out


def unfinished_file(folder: Path) -> Optional[str]:
    """The name of a raw file of ``folder`` that is not a finished file (None if all are), with why."""
    for path in sorted(folder.glob("*.h5")):
        try:
            with h5py.File(path, "r") as f:
                missing = [g for g in ("INDEX", "METADATA") if g not in f]
        except OSError as exc:
            return f"{path.name} (does not open: {str(exc).splitlines()[0]})"
        if missing:
            return f"{path.name} (no {' or '.join(missing)} yet)"
    return None


def wait_for_run_files(proposal: int, run: int, data_root: Optional[os.PathLike] = None,
                       timeout: float = 3600.0, settle: float = DEFAULT_SETTLE_S, poll: float = DEFAULT_POLL_S,
                       clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                       sleep: Callable[[float], None] = time.sleep) -> Path:
    """Wait until the raw files of ``run`` are complete; the run directory.

    Parameters
    ----------
    proposal, run : int
    data_root : path, optional
        Root of the raw data tree (default ``$EXTRA_DATA_DATA_ROOT``).
    timeout : float
        Seconds to wait at most.
    settle : float
        Seconds the files must stay unchanged.
    poll : float
        Seconds between looks.
    clock, wall, sleep : callables
        Monotonic time, wall-clock time (compared with the files' modification times) and sleep.

    Raises
    ------
    DataError
        After ``timeout`` seconds, naming what is still missing or changing.
    """
    from smalldata.io.runaccess import find_run_directory

    start = clock()
    reason = "the run directory does not exist"
    logged = False
    while True:
        now = clock()
        folder = None
        try:
            folder = find_run_directory(proposal, run, data_root)
        except DataError as exc:
            reason = str(exc).split(";")[0]
        if folder is not None:
            snap = _snapshot(folder)
            age = wall() - max((mtime for _, mtime in snap.values()), default=0) / 1e9
            if not snap:
                reason = f"{folder} holds no raw files yet"
            elif age < settle:
                reason = f"files of {folder} changed less than {settle:g} s ago"
            else:
                unfinished = unfinished_file(folder)
                if unfinished is None:
                    log.info("run %d: %d raw files complete in %s", run, len(snap), folder)
                    return folder
                reason = f"{unfinished} is still being written"
        if now - start >= timeout:
            raise DataError(f"run {run} of proposal {proposal}: its files are not complete after waiting "
                            f"{timeout:g} s: {reason}; wait longer (--wait SECONDS) or check the run number")
        if not logged:
            log.info("run %d: waiting for its files (%s), at most %g s", run, reason, timeout)
            logged = True
        sleep(max(0.05, min(poll, timeout - (now - start))))
        activity.note()  # waiting is progress: the stall watch must not name a waiting rank


def wait_on_rank0(proposal: int, run: int, data_root: Optional[os.PathLike], timeout: float, comm=None,
                  settle: float = DEFAULT_SETTLE_S) -> None:
    """:func:`wait_for_run_files` on rank 0 while the other ranks sleep; its failure raised on every rank.

    The other ranks wait in a non-blocking barrier tested twice a second, so that a long wait
    does not keep their cores busy in a collective; then rank 0's failure, if any, is sent to
    them and every rank raises the same error (the command reports it once, from rank 0).
    """
    from smalldata.parallel import mpi

    comm = mpi.get_comm(comm)
    activity.note(f"waiting for the files of run {run}")
    if comm.Get_size() == 1:
        wait_for_run_files(proposal, run, data_root, timeout=timeout, settle=settle)
        return
    failure: Optional[BaseException] = None
    if comm.Get_rank() == 0:
        try:
            wait_for_run_files(proposal, run, data_root, timeout=timeout, settle=settle)
        except BaseException as exc:  # noqa: BLE001 - sent to the other ranks below
            failure = exc
    request = comm.Ibarrier()
    while not request.Test():
        activity.note()  # waiting is progress: the stall watch must not name a waiting rank
        time.sleep(0.5)
    if comm.Get_rank() == 0 and failure is not None and not isinstance(failure, DataError):
        comm.bcast(DataError(f"waiting for run {run} failed on rank 0: {failure}"), root=0)
        raise failure
    failure = comm.bcast(failure, root=0)
    if failure is not None:
        raise failure
