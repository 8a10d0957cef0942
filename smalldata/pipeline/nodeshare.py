"""Dark constants held once per node: one rank reads them, every rank of the node maps them.

The pedestal and noise of a dark are ``(modules, cells, rows, columns)`` float32 each: for
the DSSC 3.4 GB apiece with 800 memory cells. Read by every rank, 64 ranks on a node would hold 430 GB
and read as much from the file system at set-up. With MPI-3 shared memory
(:mod:`smalldata.parallel.sharedmem`) the first rank of each node reads the file and writes
the two arrays into a window that the node's other ranks map read-only; the rest of a
:class:`~smalldata.calib.darkfile.DarkConstants` (status mask, cells, frames, metadata) is
small and broadcast.

Every rank of ``comm`` must call :func:`load_shared_darks` together: the window is a
collective of the node. A failure to read on the node's first rank is raised on every
rank of that node alike.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from smalldata.calib.darkfile import DarkConstants, read_dark_file
from smalldata.errors import CalibrationError
from smalldata.parallel.sharedmem import node_communicator, shared_empty

log = logging.getLogger(__name__)


def load_shared_darks(requests: Mapping[str, Tuple[str, Sequence[int], bool]], comm) -> Dict[str, DarkConstants]:
    """Dark constants per detector, their pedestal and noise in node-shared memory.

    Parameters
    ----------
    requests : mapping
        Detector name to (dark constants file, modules to load, whether to load the noise).
    comm : MPI communicator
        Every rank of it calls this function.

    Returns
    -------
    dict
        Detector name to :class:`DarkConstants`; ``pedestal`` is a (M, C, rows, columns) view of a
        cell-major shared array (what :class:`~smalldata.calib.detobject.DetObject` keeps,
        so it takes it without a copy), ``noise`` shared as is (or None). Without MPI (or with
        one rank) the constants are read as usual.
    """
    node = node_communicator(comm)
    if node is None:
        return {name: read_dark_file(path, modules, noise) for name, (path, modules, noise) in requests.items()}
    out = {}
    for name, (path, modules, noise) in requests.items():
        out[name] = _load_one(node, path, modules, noise)
    log.debug("dark constants of %s shared by %d rank(s) of this node", list(out), node.Get_size())
    return out


def _load_one(node, path: str, modules: Optional[Sequence[int]], with_noise: bool) -> DarkConstants:
    """One file's constants: read on the node's rank 0, shared with the others."""
    dark, error = None, None
    if node.Get_rank() == 0:
        try:
            dark = read_dark_file(path, modules, with_noise)
        except CalibrationError as exc:
            error = str(exc)
        except (OSError, ValueError, KeyError) as exc:  # must reach the node's other ranks, waiting below
            error = f"cannot read dark constants {path}: {exc}"
    small = node.bcast((error, None if dark is None else dataclasses.replace(dark, pedestal=None, noise=None)),
                       root=0)
    error, meta = small
    if error is not None:
        raise CalibrationError(error)
    n_mod, n_cells = len(meta.modules), len(meta.cell_ids)
    shape = (n_mod, n_cells) + tuple(meta.status_mask.shape[1:])
    pedestal_cm = shared_empty(node, (shape[1], shape[0]) + shape[2:], np.float32)
    noise = shared_empty(node, shape, np.float32) if with_noise else None
    if node.Get_rank() == 0:
        np.copyto(pedestal_cm, dark.pedestal.transpose(1, 0, 2, 3))
        if with_noise:
            np.copyto(noise, dark.noise)
        del dark
    node.Barrier()
    pedestal_cm.flags.writeable = False
    if with_noise:
        noise.flags.writeable = False
    return dataclasses.replace(meta, pedestal=pedestal_cm.transpose(1, 0, 2, 3), noise=noise)
