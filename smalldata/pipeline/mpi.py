"""Small MPI helpers that also work in a plain single process (no ``mpiexec``).

``mpi4py`` initialises MPI as a singleton when the program is started without
``mpiexec``; if ``mpi4py`` cannot be imported at all, :func:`get_comm` returns a
one-rank stand-in with the few methods used here.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np

from smalldata.errors import SmallDataError

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


def is_root(comm=None, root: int = 0) -> bool:
    """Whether this process is rank ``root``."""
    return rank(comm) == root


def block_range(n_items: int, comm=None) -> tuple:
    """Contiguous block ``(start, stop)`` of ``n_items`` for this rank (earlier ranks get the extra)."""
    r, s = rank(comm), size(comm)
    return (r * n_items) // s, ((r + 1) * n_items) // s


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


def agree(action: Callable[[], object], comm=None):
    """Run ``action`` on every rank; if it fails on any rank, raise that failure on all ranks.

    Keeps the other ranks from waiting forever in a later collective. A failure is
    re-raised as :class:`~smalldata.errors.SmallDataError` (prefixed by the failing rank
    when there are several ranks); a single rank re-raises the original exception.
    """
    comm = get_comm(comm)
    if comm.Get_size() == 1:
        return action()
    result, error = None, None
    try:
        result = action()
    except SmallDataError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure must reach the other ranks
        error = f"{type(exc).__name__}: {exc}"
        log.debug("rank %d failed", comm.Get_rank(), exc_info=True)
    errors = comm.allgather(error)
    for r, message in enumerate(errors):
        if message is not None:
            raise SmallDataError(f"rank {r}: {message}")
    return result
