"""The mean calibrated image of many frames from sums of their raw values.

The mean of ``(raw - pedestal[cell]) * inverse_gain`` over a pixel's valid frames is
``(sum of raw - sum of pedestal[cell]) * inverse_gain / count``, and the pedestal sum is
``sum over cells of (valid frames of that cell) * pedestal[cell]``. So a frame costs one
integer addition per pixel: the pedestal is read once at the end, not once per frame,
and only the rare saturated pixel (raw at or above the detector type's saturation, not
valid) is noted per frame so that its raw value and its cell's pedestal are left out. The result is exact in float64 (no
per-frame rounding), within one float32 rounding of the value of each frame of the
fused kernel's fixed-point mean. Used by the average image (``AvImage``) of one module.
"""
from __future__ import annotations

import numpy as np
from numba import njit



class RawMean:
    """Sums of raw values of one module's frames, per pixel and per memory cell.

    Parameters
    ----------
    n_cells : int
        Memory cells of the detector's dark constants.
    shape : tuple
        (rows, columns) pixels of the module.
    saturation : int
        The detector type's saturation: a raw value at or above it is not valid.
    """

    def __init__(self, n_cells: int, shape: tuple, saturation: int):
        self.shape = tuple(shape)
        self.saturation = int(saturation)
        # frames whose unsaturated values (< saturation) a uint32 batch sum holds exactly
        self.frames_per_sum = max(1, (2 ** 32 - 1) // max(self.saturation - 1, 1))
        n_pix = int(np.prod(shape))
        self.raw_sum = np.zeros(n_pix, dtype=np.int64)
        self.frames_per_cell = np.zeros(n_cells, dtype=np.int64)
        self.saturated = np.zeros(n_pix, dtype=np.int64)  # frames in which the pixel was saturated
        self.saturated_pedestal = np.zeros(n_pix)  # their pedestals, summed
        self.n_frames = 0

    def add(self, raw: np.ndarray, cells: np.ndarray, keep: np.ndarray, pedestal_cm: np.ndarray) -> None:
        """Add the kept frames of a batch.

        Parameters
        ----------
        raw : (N, rows, columns) uint16
        cells : (N,) int64
            Index of each frame's memory cell into the constants.
        keep : (N,) bool
            Frames to add (wanted and with this module present).
        pedestal_cm : (C, 1, rows, columns) float32
            The module's pedestal, cell-major (read only where a pixel is saturated).
        """
        keep = np.ascontiguousarray(keep, dtype=bool)
        raw = np.ascontiguousarray(raw).reshape(len(raw), -1)
        cells = np.ascontiguousarray(cells, dtype=np.int64)
        ped = pedestal_cm.reshape(pedestal_cm.shape[0], -1)
        for a in range(0, len(raw), self.frames_per_sum):
            b = a + self.frames_per_sum
            _add_frames(raw[a:b], cells[a:b], keep[a:b], ped, self.raw_sum, self.frames_per_cell,
                        self.saturated, self.saturated_pedestal, self.saturation)
        self.n_frames += int(np.count_nonzero(keep))

    def mean(self, pedestal_cm: np.ndarray, inverse_gain, good: np.ndarray) -> np.ndarray:
        """(rows, columns) float32 mean in the detector's units; NaN where a pixel was never valid.

        ``inverse_gain``: scalar, (1, rows, columns) or None (ADU); ``good``: (1, rows, columns) static mask.
        """
        ped_sum = _pedestal_sum(pedestal_cm.reshape(pedestal_cm.shape[0], -1), self.frames_per_cell)
        ped_sum -= self.saturated_pedestal
        count = self.frames_per_cell.sum() - self.saturated
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (self.raw_sum - ped_sum) / count
        if inverse_gain is not None:
            mean = mean * np.asarray(inverse_gain, dtype=np.float64).reshape(-1)
        mean = np.where((count > 0) & np.asarray(good).reshape(-1), mean, np.nan)
        return mean.astype(np.float32).reshape(self.shape)


@njit(cache=True, nogil=True)
def _add_frames(raw, cells, keep, ped, raw_sum, per_cell, saturated, saturated_ped, saturation):
    """Sum the kept frames' unsaturated raw values; count frames per cell; note saturated pixels.

    The batch is summed in uint32 (eight lanes per vector instruction, twice int64's), exact
    for 2**32 / saturation frames (8.4 million for the DSSC; :meth:`RawMean.add` passes no more),
    and added to the int64 run sums once.
    """
    n_frames, n_pix = raw.shape
    batch_sum = np.zeros(n_pix, dtype=np.uint32)
    for f in range(n_frames):
        if not keep[f]:
            continue
        c = cells[f]
        per_cell[c] += 1
        row = raw[f]
        peak = np.uint16(0)
        for p in range(n_pix):  # no branch, and a maximum rather than a count: vectorised
            r = row[p]
            batch_sum[p] += np.uint32(r) if r < saturation else np.uint32(0)
            peak = max(peak, r)
        if peak >= saturation:  # rare
            for p in range(n_pix):
                if row[p] >= saturation:
                    saturated[p] += 1
                    saturated_ped[p] += ped[c, p]
    for p in range(n_pix):
        raw_sum[p] += np.int64(batch_sum[p])


@njit(cache=True, nogil=True)
def _pedestal_sum(ped, frames_per_cell):
    """Per pixel, the sum over cells of (frames of the cell) * pedestal, in float64; cells without frames are not read."""
    out = np.zeros(ped.shape[1])
    for c in range(ped.shape[0]):
        n = np.float64(frames_per_cell[c])
        if n == 0:
            continue
        row = ped[c]
        for p in range(ped.shape[1]):
            out[p] += n * np.float64(row[p])
    return out
