"""Progress reporting and early stop across MPI ranks, without blocking collectives.

Every rank tells rank 0 after each batch how many trains and frames it has done
(non-blocking sends); rank 0 shows the total as a bar on a terminal or as log lines.
A rank that fails, or receives a stop signal, tells the others, which stop at their
next poll (between batches, between blocks of the merge) or wait (:meth:`Coordinator.wait_for_all`).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import List, Optional

from smalldata.errors import SmallDataError
from smalldata.parallel import activity, shutdown

log = logging.getLogger(__name__)

TAG_PROGRESS = 71
TAG_ABORT = 72


class StoppedByOtherRank(SmallDataError):
    """This rank stopped early because another rank failed or was interrupted.

    Attributes
    ----------
    rank : int
        The rank that stopped first.
    reason : str
        Its message (prefixed with its rank).
    signum : int or None
        The signal that stopped it, if any.
    """

    def __init__(self, rank: int, reason: str, signum: Optional[int] = None):
        self.rank = rank
        self.reason = f"rank {rank}: {reason}"
        self.signum = signum
        super().__init__(self.reason)


class Coordinator:
    """Progress and abort messages between ranks.

    Parameters
    ----------
    comm : mpi4py communicator (or a one-rank stand-in)
    total_trains, total_frames : int
        Work of the whole run (all ranks).
    interval : float
        Seconds between log lines (non-terminal output).
    stream : file, optional
        Where the bar goes (default stderr).
    """

    def __init__(self, comm, total_trains: int = 0, total_frames: int = 0, interval: float = 10.0, stream=None):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.interval = interval
        self.stream = stream or sys.stderr
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._done = {r: (0, 0) for r in range(self.size)}  # rank -> (trains, frames)
        self._received = {r: 0 for r in range(self.size)}
        self.sent = 0
        self._requests: List = []
        self._aborts_sent = [0] * self.size
        self._aborts_received = [0] * self.size
        self.aborted_by: Optional[int] = None
        self._abort_reason = ("", None)
        self.set_work(total_trains, total_frames)

    def set_work(self, total_trains: int, total_frames: int) -> None:
        """The work of the whole run (all ranks); progress is timed from here."""
        self.total_trains = total_trains
        self.total_frames = total_frames
        self.start = time.monotonic()
        self._last_report = 0.0

    # ------------------------------------------------------------------ per batch
    def batch_done(self, trains_done: int, frames_done: int) -> None:
        """Record this rank's cumulative progress and report it."""
        if self.rank == 0:
            self._done[0] = (trains_done, frames_done)
            self._drain_progress()
            self._report()
        else:
            self._requests.append(self.comm.isend((trains_done, frames_done), dest=0, tag=TAG_PROGRESS))
            self.sent += 1

    def poll(self) -> None:
        """Stop here if asked to: :class:`~smalldata.parallel.shutdown.Interrupted` for a signal to this
        rank (the others are told first), :class:`StoppedByOtherRank` when another rank stopped."""
        activity.note()
        self._receive_aborts()
        if self.aborted_by is not None:
            raise StoppedByOtherRank(self.aborted_by, *self._abort_reason)
        signum = shutdown.received()
        if signum is not None:
            exc = shutdown.Interrupted(signum)
            self.abort(str(exc), signum)
            raise exc

    def should_stop(self) -> bool:
        """Whether another rank has stopped (checked between batches)."""
        self._receive_aborts()
        return self.aborted_by is not None

    def abort(self, reason: str = "failed", signum: Optional[int] = None) -> None:
        """Tell all other ranks to stop (once)."""
        if any(self._aborts_sent):
            return
        for r in range(self.size):
            if r != self.rank:
                self._requests.append(self.comm.isend((reason, signum), dest=r, tag=TAG_ABORT))
                self._aborts_sent[r] += 1

    def _receive_aborts(self) -> None:
        if self.size == 1:
            return
        from mpi4py import MPI

        status = MPI.Status()
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=TAG_ABORT, status=status):
            src = status.Get_source()
            reason, signum = self.comm.recv(source=src, tag=TAG_ABORT)
            self._aborts_received[src] += 1
            if self.aborted_by is None:
                self.aborted_by, self._abort_reason = src, (reason, signum)

    def wait_for_all(self, pause: float = 0.002) -> None:
        """A barrier that keeps listening: a stop signal received while waiting is passed on at once.

        A rank waiting here for rank 0 (merging) cannot leave the wait, but rank 0 polls and
        stops; the outcome is then agreed in the collective that follows.
        """
        if self.size == 1:
            return
        request = self.comm.Ibarrier()
        while not request.Test():
            activity.note()
            signum = shutdown.received()
            if signum is not None:
                self.abort(str(shutdown.Interrupted(signum)), signum)
            time.sleep(pause)

    # ------------------------------------------------------------------ end of run
    def finish(self, sent_counts: List[int]) -> None:
        """Receive every outstanding progress message, given what each rank sent, and report."""
        if self.size > 1 and self.rank == 0:
            for r in range(1, self.size):
                while self._received[r] < sent_counts[r]:
                    self._done[r] = self.comm.recv(source=r, tag=TAG_PROGRESS)
                    self._received[r] += 1
        if self.rank == 0:
            self._report(final=True)

    def drain(self) -> None:
        """Receive every stop message still in flight and complete all sends (every rank, at the very end)."""
        if self.size == 1:
            return
        from mpi4py import MPI

        sent = self.comm.allgather(list(self._aborts_sent))
        for src in range(self.size):
            while self._aborts_received[src] < sent[src][self.rank]:
                self.comm.recv(source=src, tag=TAG_ABORT)
                self._aborts_received[src] += 1
        MPI.Request.Waitall(self._requests)
        self._requests = []

    def _drain_progress(self) -> None:
        if self.size == 1:
            return
        from mpi4py import MPI

        status = MPI.Status()
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=TAG_PROGRESS, status=status):
            src = status.Get_source()
            self._done[src] = self.comm.recv(source=src, tag=TAG_PROGRESS)
            self._received[src] += 1

    def _report(self, final: bool = False) -> None:
        now = time.monotonic()
        trains = sum(t for t, _ in self._done.values())
        frames = sum(f for _, f in self._done.values())
        elapsed = max(now - self.start, 1e-9)
        rate = frames / elapsed
        left = (self.total_frames - frames) / rate if rate > 0 else float("nan")
        text = (f"{trains}/{self.total_trains} trains, {frames}/{self.total_frames} frames, "
                f"{rate:.0f} frames/s, {left:.0f} s left")
        if self.is_tty:
            width = 30
            filled = int(width * trains / max(self.total_trains, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}  ")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        elif final or now - self._last_report >= self.interval:
            log.info("progress: %s", text)
            self._last_report = now
