"""Read-only baselines of the producer benchmark: the same frames read with plain h5py and with extra-data.

:func:`h5py_read_plan` makes the producer's batches (whole trains, at most ``batch_size``
frames) from a module file's INDEX; :func:`h5py_read` and :func:`extra_data_read` read
them and return (frames, seconds).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Sequence, Tuple

import h5py
import numpy as np

from smalldata.parallel.mpi import split_batches

DSSC_SOURCE = "SCS_DET_DSSC1M-1/DET/{m}CH0:xtdf"


def h5py_read_plan(files: Sequence[Path], module: int, batch_size: int) -> List[Tuple[Path, List[Tuple[int, int]]]]:
    """Per file, the frame ranges ``[first, stop)`` of the producer's batches (from the file's INDEX).

    Batches are made per file; they match the producer's when a file's train count is a
    multiple of the trains per batch (as with the default 100 trains per file).
    """
    src = DSSC_SOURCE.format(m=module)
    plan = []
    for path in files:
        with h5py.File(path, "r") as f:
            first = f[f"INDEX/{src}/image/first"][:].astype(np.int64)
            count = f[f"INDEX/{src}/image/count"][:].astype(np.int64)
        ranges = [(int(first[a]), int(first[b - 1] + count[b - 1])) for a, b in split_batches(count, batch_size)]
        plan.append((path, [(a, b) for a, b in ranges if b > a]))
    return plan


def h5py_read(plan, module: int) -> Tuple[int, float]:
    """Read every planned block with plain h5py; returns (frames, seconds)."""
    key = f"INSTRUMENT/{DSSC_SOURCE.format(m=module)}/image/data"
    frames, touch = 0, 0
    t0 = time.perf_counter()
    for path, ranges in plan:
        with h5py.File(path, "r") as f:
            ds = f[key]
            for a, b in ranges:
                block = ds[a:b]
                touch += int(block[-1, 0, 0, 0])  # use the data
                frames += block.shape[0]
    return frames, time.perf_counter() - t0


def extra_data_read(run, module: int, train_blocks: Sequence[np.ndarray]) -> Tuple[int, float]:
    """Read the same batches through extra-data (run-level ``select_trains``, then ``ndarray``)."""
    from extra_data import by_id

    src = DSSC_SOURCE.format(m=module)
    frames, touch = 0, 0
    t0 = time.perf_counter()
    for tids in train_blocks:
        block = run.select_trains(by_id[tids])[src, "image.data"].ndarray()
        touch += int(block[-1, 0, 0, 0])
        frames += block.shape[0]
    return frames, time.perf_counter() - t0
