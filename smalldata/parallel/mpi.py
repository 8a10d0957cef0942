"""Small MPI helpers that also work in a plain single process (no ``mpiexec``).

``mpi4py`` initialises MPI as a singleton when the program is started without
``mpiexec``; if ``mpi4py`` cannot be imported at all, :func:`get_comm` returns a
one-rank stand-in with the few methods used here.
"""
from __future__ import annotations

import logging
from typing import Callable, List, Optional, Tuple

import numpy as np

from smalldata.errors import DataError, SmallDataError
from smalldata.parallel import shutdown
from smalldata.parallel.progress import StoppedByOtherRank

log = logging.getLogger(__name__)

#: Elements per MPI message when reducing large arrays (keeps counts far below 2**31).
REDUCE_CHUNK = 1 << 24


class SerialComm:
    """Stand-in communicator of one rank, used when ``mpi4py`` is unavailable."""

    def Get_rank(self) -> int:
        """Always 0."""
        return 0

    def Get_size(self) -> int:
        """Always 1."""
        return 1

    def Barrier(self) -> None:
        """Nothing to wait for."""

    def bcast(self, obj, root: int = 0):
        """Return ``obj`` unchanged."""
        return obj

    def allgather(self, obj) -> list:
        """A list with ``obj`` only."""
        return [obj]

    def allreduce(self, obj, op=None):
        """Return ``obj`` unchanged."""
        return obj


def get_comm(comm=None):
    """The communicator to use: ``comm`` if given, else ``MPI.COMM_WORLD`` (or a one-rank stand-in)."""
    if comm is not None:
        return comm
    try:
        from mpi4py import MPI
    except ImportError:
        log.debug("mpi4py not importable; running as a single rank")
        return SerialComm()
    return MPI.COMM_WORLD


def rank(comm=None) -> int:
    """This process's rank in ``comm`` (default: the world)."""
    return get_comm(comm).Get_rank()


def size(comm=None) -> int:
    """Number of ranks in ``comm`` (default: the world)."""
    return get_comm(comm).Get_size()


def split_blocks(frames_per_train: np.ndarray, n_ranks: int) -> List[Tuple[int, int]]:
    """Contiguous train ranges ``[start, stop)``, one per rank, balanced by frame count."""
    n = len(frames_per_train)
    cum = np.concatenate([[0], np.cumsum(frames_per_train, dtype=np.int64)])
    total = cum[-1]
    bounds = [0]
    for r in range(1, n_ranks):
        bounds.append(int(np.searchsorted(cum, total * r / n_ranks, side="left")))
    bounds.append(n)
    bounds = np.maximum.accumulate(np.clip(bounds, 0, n))
    return [(int(bounds[r]), int(bounds[r + 1])) for r in range(n_ranks)]


def split_batches(frames_per_train: np.ndarray, batch_size: int) -> List[Tuple[int, int]]:
    """Consecutive train ranges holding at most ``batch_size`` frames (at least one train each)."""
    batches, start, count = [], 0, 0
    for i, n in enumerate(frames_per_train):
        if i > start and count + n > batch_size:
            batches.append((start, i))
            start, count = i, 0
        count += int(n)
    if start < len(frames_per_train):
        batches.append((start, len(frames_per_train)))
    return batches


def frame_batches(frames_per_train: np.ndarray, batch_size: int,
                  whole_trains: bool = False) -> List[Tuple[int, int, Optional[Tuple[int, int]]]]:
    """Batches of at most ``batch_size`` frames: ``(first train, stop train, window)``.

    Consecutive trains as in :func:`split_batches`, with ``window`` None; a train of more
    than ``batch_size`` frames is cut into pieces ``(t, t + 1, (start, stop))`` of its frame
    positions, so that a batch's memory does not grow with the frames per train, unless
    ``whole_trains`` (a batch must hold every frame of its trains).
    """
    batches: List[Tuple[int, int, Optional[Tuple[int, int]]]] = []
    for start, stop in split_batches(frames_per_train, batch_size):
        n = int(frames_per_train[start])
        if whole_trains or stop - start > 1 or n <= batch_size:
            batches.append((start, stop, None))
        else:
            batches.extend((start, stop, (f, min(f + batch_size, n))) for f in range(0, n, batch_size))
    return batches


def block_range(n_items: int, comm=None) -> tuple:
    """Contiguous block ``(start, stop)`` of ``n_items`` equal items for this rank (:func:`split_blocks`)."""
    return split_blocks(np.ones(n_items, dtype=np.int64), size(comm))[rank(comm)]


def sum_reduce(array: np.ndarray, comm=None, root: Optional[int] = 0) -> np.ndarray:
    """Sum an integer array over ranks, in place.

    Parameters
    ----------
    array : ndarray
        C-contiguous integer array (e.g. int64 accumulators), the same shape on every rank.
    comm : communicator, optional
        Default: the world.
    root : int or None
        Rank that receives the sum; ``None`` gives the sum to every rank (all-reduce).

    Returns
    -------
    ndarray
        ``array`` itself; on ranks other than ``root`` its content is then unspecified.
        Integer sums are exact, so the result does not depend on the number of ranks.
    """
    comm = get_comm(comm)
    if comm.Get_size() == 1:
        return array
    if not array.flags.c_contiguous:
        raise ValueError("sum_reduce needs a C-contiguous array")
    if array.dtype.kind not in "iu":
        raise ValueError(f"sum_reduce is for integer arrays (exact sums), got {array.dtype}")
    from mpi4py import MPI

    flat = array.reshape(-1)
    me = comm.Get_rank()
    for start in range(0, max(flat.size, 1), REDUCE_CHUNK):
        part = flat[start:start + REDUCE_CHUNK]
        if root is None:
            comm.Allreduce(MPI.IN_PLACE, part, op=MPI.SUM)
        elif me == root:
            comm.Reduce(MPI.IN_PLACE, part, op=MPI.SUM, root=root)
        else:
            comm.Reduce(part, None, op=MPI.SUM, root=root)
    return array


def max_reduce(array: np.ndarray, comm, root: int = 0) -> np.ndarray:
    """Element-wise maximum of a float array over the ranks of ``comm``, in place on ``root``.

    Like :func:`sum_reduce`: chunked messages; on the other ranks the content is
    unspecified afterwards.
    """
    from mpi4py import MPI
    flat = array.reshape(-1)
    for start in range(0, max(flat.size, 1), REDUCE_CHUNK):
        part = flat[start:start + REDUCE_CHUNK]
        if comm.Get_rank() == root:
            comm.Reduce(MPI.IN_PLACE, part, op=MPI.MAX, root=root)
        else:
            comm.Reduce(part, None, op=MPI.MAX, root=root)
    return array


def check_same_everywhere(comm, signature, what: str) -> None:
    """Raise :class:`~smalldata.errors.DataError` unless every rank of ``comm`` passes an equal ``signature``."""
    signatures = comm.allgather(signature)
    if any(s != signatures[0] for s in signatures):
        raise DataError(f"{what} differ between MPI ranks: {signatures}")


def failure_of(exc: BaseException) -> tuple:
    """What a rank tells the others about its failure: ``(message, signal number or None, stopped)``.

    ``stopped`` is True when the rank only stopped because another one failed; for a
    signal the message is what it interrupted (``Interrupted.context``, may be empty).
    """
    if isinstance(exc, StoppedByOtherRank):
        return (exc.reason, exc.signum, True)
    if isinstance(exc, shutdown.Interrupted):
        return (exc.context, exc.signum, False)
    if isinstance(exc, SmallDataError):
        return (str(exc), None, False)
    return (f"{type(exc).__name__}: {exc}", None, False)


def raise_agreed(failures: list, comm=None) -> None:
    """Raise, on every rank alike, the first real failure in ``failures`` (one entry per rank, None: fine).

    A failure caused by a signal raises :class:`~smalldata.parallel.shutdown.Interrupted`
    (exit status 128 + signal), any other :class:`~smalldata.errors.SmallDataError`
    prefixed by the failing rank (when there are several).
    """
    n_ranks = len(failures)
    real = [(r, f) for r, f in enumerate(failures) if f is not None and not f[2]]
    chosen = real or [(r, f) for r, f in enumerate(failures) if f is not None]
    if not chosen:
        return
    r, (message, signum, stopped) = chosen[0]
    where = f" on rank {r}" if n_ranks > 1 and not stopped else ""
    if signum is not None:
        raise shutdown.Interrupted(signum, where, context="" if stopped else message)
    raise SmallDataError(message if stopped or n_ranks == 1 else f"rank {r}: {message}")


def agree(action: Callable[[], object], comm=None, coordinator=None, check_signals: bool = True):
    """Run ``action`` on every rank; if it fails on any rank, raise that failure on all ranks.

    Keeps the other ranks from waiting forever in a later collective: every exception,
    ``SystemExit`` and ``KeyboardInterrupt`` included, is caught and shared. With a
    :class:`~smalldata.parallel.progress.Coordinator`, ranks wait for each other in a
    polling barrier that passes a stop signal on to a rank still busy (e.g. rank 0
    merging); with ``check_signals`` a signal received during ``action`` or the wait
    stops every rank here (leave it False where one rank may already have published).
    A single rank re-raises the original exception.
    """
    comm = get_comm(comm)
    if comm.Get_size() == 1:
        result = action()
        if check_signals:
            shutdown.check()
        return result
    result, failure = None, None
    try:
        result = action()
    except BaseException as exc:  # noqa: BLE001 - any failure must reach the other ranks
        failure = failure_of(exc)
        log.debug("rank %d failed", comm.Get_rank(), exc_info=True)
    if coordinator is not None:
        coordinator.wait_for_all()
    if failure is None and check_signals and shutdown.received() is not None:
        failure = failure_of(shutdown.Interrupted(shutdown.received()))
    raise_agreed(comm.allgather(failure), comm)
    return result
