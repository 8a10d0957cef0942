"""Exact per-cell, per-pixel sums of one DSSC module: the accumulator of the dark.

:class:`CellAccumulator` keeps, per memory cell and pixel, the frame count and the
sums of the raw values and of their squares as int64: integer sums are exact, so
adding them over MPI ranks gives the same pedestal and noise for any number of ranks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from smalldata.constants import DSSC_ADC_MAX, DSSC_MODULE_SHAPE
from smalldata.lookup import find_sorted
from smalldata.parallel import mpi

N_PIXELS = DSSC_MODULE_SHAPE[0] * DSSC_MODULE_SHAPE[1]
#: Most frames summed at once in uint32 partial sums: 16384 * 511**2 < 2**32.
MAX_FRAMES_PER_ADD = 16384


class CellAccumulator:
    """Exact per-cell, per-pixel sums of one module: count, sum and sum of squares (int64).

    Parameters
    ----------
    cell_ids : sequence of int
        The memory cells that can occur, ascending.
    """

    def __init__(self, cell_ids: Sequence[int]):
        self.cell_ids = np.asarray(cell_ids, dtype=np.uint16)
        n_cells = len(self.cell_ids)
        self.count = np.zeros(n_cells, dtype=np.int64)
        self.sum = np.zeros((n_cells, N_PIXELS), dtype=np.int64)
        self.sumsq = np.zeros((n_cells, N_PIXELS), dtype=np.int64)

    def cell_index(self, cells: np.ndarray) -> np.ndarray:
        """Position of each of ``cells`` in :attr:`cell_ids`."""
        idx, found = find_sorted(self.cell_ids, cells)
        if len(cells) and not found.all():
            raise ValueError("frames with memory cells not known to the accumulator")
        return idx

    def add(self, data: np.ndarray, cells: np.ndarray, cells_per_block: int = 64) -> None:
        """Add frames ``data`` (n, 128, 512) uint16 taken in memory cells ``cells`` (n,)."""
        n = len(cells)
        if n == 0:
            return
        if n > MAX_FRAMES_PER_ADD:
            for start in range(0, n, MAX_FRAMES_PER_ADD):
                self.add(data[start:start + MAX_FRAMES_PER_ADD], cells[start:start + MAX_FRAMES_PER_ADD],
                         cells_per_block)
            return
        data = data.reshape(n, N_PIXELS)
        idx = self.cell_index(np.asarray(cells))
        np.add.at(self.count, idx, 1)
        # uint32 partial sums are exact for 9-bit values; anything larger takes the int64 path
        period = _regular_period(idx) if data.max() <= DSSC_ADC_MAX else 0
        if period:
            # trains of identical cell sequences: add train after train into uint32 partial sums
            # (exact: fewer than MAX_FRAMES_PER_ADD frames of values < 512), a block of cells at a time
            stacked = data.reshape(n // period, period, N_PIXELS)
            order = idx[:period]
            for start in range(0, period, cells_per_block):
                rows = order[start:start + cells_per_block]
                s1 = np.zeros((len(rows), N_PIXELS), dtype=np.uint32)
                s2 = np.zeros_like(s1)
                square = np.empty_like(s1)
                for train in stacked[:, start:start + cells_per_block]:
                    np.add(s1, train, out=s1)
                    np.multiply(train, train, out=square, dtype=np.uint32)
                    np.add(s2, square, out=s2)
                self.sum[rows] += s1
                self.sumsq[rows] += s2
            return
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        bounds = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            seg = data[order[a:b]]
            row = sorted_idx[a]
            self.sum[row] += seg.sum(axis=0, dtype=np.int64)
            self.sumsq[row] += np.square(seg, dtype=np.uint32).sum(axis=0, dtype=np.int64)

    def reduce(self, comm=None, root: Optional[int] = 0) -> None:
        """Add the sums of all ranks: counts to every rank, pixel sums to ``root`` (all if None)."""
        mpi.sum_reduce(self.count, comm, root=None)
        for arr in (self.sum, self.sumsq):
            mpi.sum_reduce(arr, comm, root=root)

    def mean_std(self) -> tuple:
        """Pedestal and noise, each (C, 128, 512) float32 (NaN where a cell has < 1 or < 2 frames)."""
        n = self.count[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / n
            numerator = n * self.sumsq - self.sum * self.sum  # exact in int64
            var = numerator / (n * (n - 1)).astype(np.float64)
        shape = (len(self.cell_ids),) + DSSC_MODULE_SHAPE
        return (mean.astype(np.float32).reshape(shape),
                np.sqrt(np.maximum(var, 0.0)).astype(np.float32).reshape(shape))


def _regular_period(idx: np.ndarray) -> int:
    """Length K if ``idx`` repeats one sequence of K distinct values, else 0."""
    first_repeat = np.flatnonzero(idx == idx[0])
    period = int(first_repeat[1]) if len(first_repeat) > 1 else len(idx)
    if len(idx) % period:
        return 0
    rows = idx.reshape(-1, period)
    if not (rows == rows[0]).all() or len(np.unique(rows[0])) != period:
        return 0
    return period
