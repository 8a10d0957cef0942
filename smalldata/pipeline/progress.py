"""Progress reporting and early abort across MPI ranks, without blocking collectives.

Every rank tells rank 0 after each batch how many trains and frames it has done
(non-blocking sends); rank 0 shows the total as a bar on a terminal or as log lines.
A rank that fails tells the others, which stop at their next batch.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import List, Optional

log = logging.getLogger(__name__)

TAG_PROGRESS = 71
TAG_ABORT = 72


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

    def __init__(self, comm, total_trains: int, total_frames: int, interval: float = 10.0, stream=None):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.total_trains = total_trains
        self.total_frames = total_frames
        self.interval = interval
        self.stream = stream or sys.stderr
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self._last_report = 0.0
        self._done = {r: (0, 0) for r in range(self.size)}  # rank -> (trains, frames)
        self._received = {r: 0 for r in range(self.size)}
        self.sent = 0
        self._requests: List = []
        self.aborted_by: Optional[int] = None

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

    def should_stop(self) -> bool:
        """Whether another rank has failed (checked between batches)."""
        if self.size > 1 and self.aborted_by is None and self.comm.iprobe(tag=TAG_ABORT):
            from mpi4py import MPI

            status = MPI.Status()
            self.comm.recv(source=MPI.ANY_SOURCE, tag=TAG_ABORT, status=status)
            self.aborted_by = status.Get_source()
        return self.aborted_by is not None

    def abort(self) -> None:
        """Tell all other ranks to stop."""
        for r in range(self.size):
            if r != self.rank:
                self._requests.append(self.comm.isend("abort", dest=r, tag=TAG_ABORT))

    # ------------------------------------------------------------------ end of run
    def finish(self, sent_counts: List[int], failed_ranks: List[int]) -> None:
        """Receive every outstanding message, given what each rank sent, and complete sends."""
        if self.size > 1:
            if self.rank == 0:
                for r in range(1, self.size):
                    while self._received[r] < sent_counts[r]:
                        self._done[r] = self.comm.recv(source=r, tag=TAG_PROGRESS)
                        self._received[r] += 1
            for r in failed_ranks:
                if r != self.rank and r != self.aborted_by:
                    self.comm.recv(source=r, tag=TAG_ABORT)
            from mpi4py import MPI

            MPI.Request.Waitall(self._requests)
        if self.rank == 0:
            self._report(final=True)

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
