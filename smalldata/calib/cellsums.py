"""Exact per-cell, per-pixel sums of one detector module: the accumulator of the dark.

:class:`CellAccumulator` keeps, per memory cell and pixel, the frame count and the
sums of the raw values and of their squares as int64: integer sums are exact, so
adding them over MPI ranks gives the same pedestal and noise for any number of ranks.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.lookup import find_sorted
from smalldata.parallel import mpi

#: Most frames summed at once in uint32 partial sums.
MAX_FRAMES_PER_ADD = 16384
#: Largest raw value whose squares stay exact in uint32 partial sums of that many frames
#: (16384 * 511**2 < 2**32: the DSSC's 9-bit values); larger values take the int64 path.
PARTIAL_SUM_MAX = int(np.sqrt((2 ** 32 - 1) // MAX_FRAMES_PER_ADD))


class CellAccumulator:
    """Exact per-cell, per-pixel sums of one module: count, sum and sum of squares (int64).

    Parameters
    ----------
    cell_ids : sequence of int
        The memory cells that can occur, ascending.
    module_shape : (int, int)
        Pixels (rows, columns) of the module: its detector type's (the DSSC's by default).
    """

    def __init__(self, cell_ids: Sequence[int], module_shape: Tuple[int, int] = DSSC.module_shape):
        self.cell_ids = np.asarray(cell_ids, dtype=np.uint16)
        self.module_shape = tuple(int(v) for v in module_shape)
        self.n_pixels = self.module_shape[0] * self.module_shape[1]
        n_cells = len(self.cell_ids)
        self.count = np.zeros(n_cells, dtype=np.int64)
        self.sum = np.zeros((n_cells, self.n_pixels), dtype=np.int64)
        self.sumsq = np.zeros((n_cells, self.n_pixels), dtype=np.int64)

    def cell_index(self, cells: np.ndarray) -> np.ndarray:
        """Position of each of ``cells`` in :attr:`cell_ids`."""
        idx, found = find_sorted(self.cell_ids, cells)
        if len(cells) and not found.all():
            raise ValueError("frames with memory cells not known to the accumulator")
        return idx

    def add(self, data: np.ndarray, cells: np.ndarray, cells_per_block: int = 64) -> None:
        """Add frames ``data`` (n, rows, columns) unsigned integers taken in memory cells ``cells`` (n,)."""
        n = len(cells)
        if n == 0:
            return
        if n > MAX_FRAMES_PER_ADD:
            for start in range(0, n, MAX_FRAMES_PER_ADD):
                self.add(data[start:start + MAX_FRAMES_PER_ADD], cells[start:start + MAX_FRAMES_PER_ADD],
                         cells_per_block)
            return
        n_pix = self.n_pixels
        data = data.reshape(n, n_pix)
        idx = self.cell_index(np.asarray(cells))
        np.add.at(self.count, idx, 1)
        # uint32 partial sums are exact up to PARTIAL_SUM_MAX; anything larger takes the int64 path
        period = _regular_period(idx) if data.max() <= PARTIAL_SUM_MAX else 0
        if period:
            # trains of identical cell sequences: add train after train into uint32 partial sums
            # (exact: at most MAX_FRAMES_PER_ADD frames of values <= PARTIAL_SUM_MAX), a block of cells at a time
            stacked = data.reshape(n // period, period, n_pix)
            order = idx[:period]
            for start in range(0, period, cells_per_block):
                rows = order[start:start + cells_per_block]
                s1 = np.zeros((len(rows), n_pix), dtype=np.uint32)
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
        """Pedestal and noise, each (C, rows, columns) float32 (NaN where a cell has < 1 or < 2 frames)."""
        n = self.count[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / n
            numerator = n * self.sumsq - self.sum * self.sum  # exact in int64
            var = numerator / (n * (n - 1)).astype(np.float64)
        shape = (len(self.cell_ids),) + self.module_shape
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
