"""Azimuthal bins laid out for the kernel: per block of module rows, the pixels grouped by bin.

The kernel calibrates a block of :data:`~smalldata.fused.kernels.ROWS` module rows of a
frame into a small buffer that stays in the CPU cache, then sums each bin's pixels of
that block from a precomputed list of their offsets in the buffer (a *segment* per
block and bin). Compared with walking the pixels in row order and adding to a bin
whenever it changes, this has no data-dependent branch per pixel and few segments per
frame (a bin crosses a block once, not once per row).

Only pixels that are binned and good in the static mask are listed. What depends on
the frame is handled apart from the sums: pixel counts start from the static count per
module and bin (0 for a module absent from the frame), the weights of binned pixels
that are not valid start from the static bad pixels' (all of the module's when it is
absent), and the rare pixel that is saturated in a frame is subtracted from both by
the kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class AzimuthalSegments:
    """The kernel's view of K azimuthal consumers (B = the largest number of bins + 1).

    Attributes
    ----------
    block_seg : (K, M, n_blocks + 1) int64
        Segments ``block_seg[k, m, i]`` to ``block_seg[k, m, i + 1]`` are those of
        block ``i`` (rows ``y0 + i * rows`` on) of module ``m``.
    seg_bin : (S,) int32
        Bin of each segment.
    seg_ptr : (S + 1,) int64
        Segment ``s`` is ``offset[seg_ptr[s]:seg_ptr[s + 1]]``.
    offset : (P,) int32
        Offset of each listed pixel in its block's buffer: ``(y - block_y0) * width + x - x0``.
    static_count : (K, M, B) int32
        Binned pixels good in the static mask, per module and bin.
    static_bad_weight : (K, M, B) float64
        Summed weights of binned pixels bad in the static mask.
    module_weight : (K, M, B) float64
        Summed weights of all binned pixels of the module.
    """

    block_seg: np.ndarray
    seg_bin: np.ndarray
    seg_ptr: np.ndarray
    offset: np.ndarray
    static_count: np.ndarray
    static_bad_weight: np.ndarray
    module_weight: np.ndarray

    @classmethod
    def empty(cls) -> "AzimuthalSegments":
        """No azimuthal consumer."""
        z = np.zeros
        return cls(z((0, 0, 1), np.int64), z(0, np.int32), z(1, np.int64), z(0, np.int32),
                   z((0, 0, 1), np.int32), z((0, 0, 1)), z((0, 0, 1)))


def lay_out_segments(bins: np.ndarray, weights: np.ndarray, n_bins: Sequence[int], good: np.ndarray,
                     mod_box: np.ndarray, rows: int) -> AzimuthalSegments:
    """Group the binned pixels of every block of module rows by bin.

    Parameters
    ----------
    bins : (K, M, H, W) int
        Bin of each pixel per consumer; values >= ``n_bins[k]`` are not binned.
    weights : (K, M, H, W) float64
        Weight of each pixel.
    n_bins : sequence of int
        Bins of each consumer.
    good : (M, H, W) bool
        Static mask (True = good).
    mod_box : (M, 4) int
        Rows ``[y0, y1)`` and columns ``[x0, x1)`` the kernel walks in each module; a
        binned pixel must lie inside.
    rows : int
        Module rows per block.

    Returns
    -------
    AzimuthalSegments
    """
    n_az, n_mod = bins.shape[:2]
    n_total = max(n_bins) + 1
    n_blocks = max(int(-(-(y1 - y0) // rows)) for y0, y1, _, _ in mod_box) if n_mod else 0
    block_seg = np.zeros((n_az, n_mod, n_blocks + 1), np.int64)
    static_count = np.zeros((n_az, n_mod, n_total), np.int32)
    static_bad = np.zeros((n_az, n_mod, n_total))
    module_weight = np.zeros((n_az, n_mod, n_total))
    seg_bins, seg_sizes, offsets = [], [], []
    n_seg = 0
    for k in range(n_az):
        for m in range(n_mod):
            y0, y1, x0, x1 = (int(v) for v in mod_box[m])
            binned = bins[k, m] < n_bins[k]
            inside = np.zeros_like(binned)
            inside[y0:y1, x0:x1] = True
            if np.any(binned & ~inside):
                raise ValueError(f"azimuthal consumer {k}: binned pixels of module {m} outside the kernel's box")
            b_all = bins[k, m][binned]
            module_weight[k, m] = np.bincount(b_all, weights[k, m][binned], minlength=n_total)
            bad = binned & ~good[m]
            static_bad[k, m] = np.bincount(bins[k, m][bad], weights[k, m][bad], minlength=n_total)
            ys, xs = np.nonzero(binned & good[m])
            b = bins[k, m][ys, xs].astype(np.int64)
            static_count[k, m] = np.bincount(b, minlength=n_total)
            block = (ys - y0) // rows
            off = (ys - y0 - block * rows) * (x1 - x0) + (xs - x0)
            order = np.lexsort((off, b, block))
            block, b, off = block[order], b[order], off[order]
            starts = np.flatnonzero(np.r_[True, (block[1:] != block[:-1]) | (b[1:] != b[:-1])]) if len(b) else \
                np.zeros(0, np.int64)
            sizes = np.diff(np.r_[starts, len(b)])
            seg_bins.append(b[starts])
            seg_sizes.append(sizes)
            offsets.append(off)
            # segments of block i: those whose block number is i
            first = np.searchsorted(block[starts], np.arange(n_blocks + 1))
            block_seg[k, m] = n_seg + first
            n_seg += len(starts)
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))  # noqa: E731
    sizes = cat(seg_sizes, np.int64)
    return AzimuthalSegments(block_seg, cat(seg_bins, np.int32), np.r_[0, np.cumsum(sizes)].astype(np.int64),
                             cat(offsets, np.int32), static_count, static_bad, module_weight)
