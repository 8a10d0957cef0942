"""The process an MPI launcher starts watches the rank, which runs in its child.

A rank that dies hard (``os._exit``, a crash, SIGKILL) cannot say so, and the launcher
kills the other ranks at once (SIGKILL), so they cannot either. A rank frozen (SIGSTOP, a
hung file system, a user function in an endless loop) says nothing at all. So the process
the launcher starts forks: the child is the rank (it initialises MPI and does the work,
writing what it does to an :class:`~smalldata.parallel.activity.ActivityRecord`), the
parent only watches it:

- no progress for ``stall_timeout`` seconds: one warning naming the rank, its train and
  what it was doing (again when it moves on);
- the child ended without returning from its main function: one line naming the rank,
  how it ended and its last train, removal of the temporaries it recorded and of the
  node's MPI shared-memory segments it mapped, and a non-zero exit status;
- SIGINT and SIGTERM sent to the parent (the launcher forwards them) are passed on to the
  child unless it received them itself (``scancel`` signals both).

The child dies with its parent (``PR_SET_PDEATHSIG``), so no rank outlives a job the
launcher ended.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from smalldata.parallel import activity
from smalldata.parallel.activity import FINISHED, RUNNING, ActivityRecord, Snapshot

log = logging.getLogger(__name__)

#: Environment variables by which MPI launchers (hydra, Open MPI, PMIx) give a process its rank.
LAUNCHER_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")

_PR_SET_PDEATHSIG = 1
#: Seconds a signal to the parent waits for the child to receive it too before it is passed on.
FORWARD_GRACE = 0.2
#: Seconds between two looks at the child.
WATCH_INTERVAL = 0.1


def launched_rank() -> Optional[int]:
    """This process's rank when an MPI launcher started it, else None."""
    for var in LAUNCHER_RANK_VARIABLES:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


def supervised(main: Callable[[], int], rank: int, prog: str,
               stall_timeout: float = activity.DEFAULT_STALL_TIMEOUT) -> int:
    """Run ``main`` in a child process watched by this one; the exit status to use.

    Call before MPI is initialised. In the child this returns ``main()``'s status (the
    child then exits as usual); in the parent the child's status, or non-zero after a
    hard death.
    """
    record = ActivityRecord(stall_timeout)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _die_with_parent(parent)
        activity.attach(record)
        try:
            return main()
        finally:
            record.set_state(FINISHED)
    return Supervisor(pid, record, rank, prog).watch()


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)


class Supervisor:
    """Watches one rank's child process (see the module docstring)."""

    def __init__(self, pid: int, record: ActivityRecord, rank: int, prog: str):
        self.pid = pid
        self.record = record
        self.rank = rank
        self.prog = prog
        self._pending: Dict[int, float] = {}  # signal -> when it reached this process
        self._reported: Optional[float] = None  # heartbeat of the stall last reported

    def _on_signal(self, signum, frame) -> None:
        self._pending.setdefault(signum, time.monotonic())

    def watch(self) -> int:
        """Wait for the child; report stalls and a hard death; its exit status."""
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._on_signal)
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return self._ended(os.waitstatus_to_exitcode(status))
            snap = self.record.read()
            self._forward(snap)
            self._check_stall(snap)
            time.sleep(WATCH_INTERVAL)

    def _forward(self, snap: Snapshot) -> None:
        """Pass a signal on unless the child received one itself within ``FORWARD_GRACE``."""
        now = time.monotonic()
        for signum, since in list(self._pending.items()):
            if snap.signal:
                del self._pending[signum]
            elif now - since >= FORWARD_GRACE:
                del self._pending[signum]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signum)

    def _check_stall(self, snap: Snapshot) -> None:
        if snap.state != RUNNING:
            return
        idle = time.monotonic() - snap.heartbeat
        if self._reported is not None and snap.heartbeat != self._reported:
            log.warning("rank %d is making progress again (%s)", self.rank, self._where(snap))
            self._reported = None
        if self._reported is None and idle > snap.stall_timeout:
            log.warning("rank %d has made no progress for %.0f s (stall_timeout): %s; it may be stuck "
                        "or stopped; Ctrl-C or scancel ends the run", self.rank, idle, self._where(snap))
            self._reported = snap.heartbeat

    @staticmethod
    def _where(snap: Snapshot) -> str:
        train = f"on train {snap.train}" if snap.train is not None else "before its first train"
        return f"{train}, {snap.doing}" if snap.doing else train

    def _ended(self, code: int) -> int:
        snap = self.record.read()
        if snap.state == FINISHED:
            return code if code >= 0 else 128 - code
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0 else
               f"exited with status {code} without finishing")
        log.error("%s: rank %d (pid %d) %s, %s; the run is stopped, no output written", self.prog, self.rank,
                  self.pid, how, self._where(snap).replace("on train", "last on train"))
        self._remove(snap)
        if code < 0:
            return 128 - code
        return code if code > 0 else 1

    def _remove(self, snap: Snapshot) -> None:
        """The temporaries the child recorded and the node's MPI segments it mapped."""
        for path in snap.temporaries:
            p = Path(path)
            with contextlib.suppress(OSError):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
