"""Memory shared by the MPI ranks of a node (MPI-3 shared-memory windows).

One rank of the node allocates an array in a window; the node's other ranks map the same
pages. The windows live until the end of the process (arrays point into them) and are
freed before MPI is finalised.
"""
from __future__ import annotations

import atexit
from typing import List, Optional, Tuple

import numpy as np

_WINDOWS: List[object] = []  # alive until the end of the process (the arrays point into them)


def node_communicator(comm) -> Optional[object]:
    """The ranks of ``comm`` on this node, or None with one rank (or without MPI)."""
    if comm.Get_size() == 1:
        return None
    from mpi4py import MPI

    return comm.Split_type(MPI.COMM_TYPE_SHARED)


def shared_empty(node, shape: Tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array in memory shared by the ranks of ``node`` (allocated by its rank 0).

    Every rank of ``node`` calls this together (the window is a collective of the node).
    """
    from mpi4py import MPI

    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize if node.Get_rank() == 0 else 0
    window = MPI.Win.Allocate_shared(nbytes, itemsize, comm=node)
    if not _WINDOWS:
        atexit.register(free_windows)
    _WINDOWS.append(window)
    buffer, _ = window.Shared_query(0)
    return np.ndarray(shape, dtype=dtype, buffer=buffer)


def free_windows() -> None:
    """Free the windows before MPI is finalised (atexit runs this before mpi4py's own handler)."""
    while _WINDOWS:
        _WINDOWS.pop().Free()


def mapped_segments() -> Tuple[str, ...]:
    """The files of ``/dev/shm`` this process maps (MPI's intra-node segments); empty off Linux."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "/dev/shm/" in line}
    except OSError:
        return ()
    return tuple(sorted(p for p in paths if p.startswith("/dev/shm/") and not p.endswith("(deleted)")))
