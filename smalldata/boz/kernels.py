"""Compiled (numba) accumulation of the BOZ ROI histograms: one pass over the pixels of a batch.

:func:`accumulate_histograms` does what three ``numpy.bincount`` calls over (frames x pixels)
index arrays would, without materialising those arrays: per frame the saturation test, then for
unsaturated frames the per-pixel histogram and the histogram of the frame's intensity bin.
All counts are integers, so the result does not depend on how frames are split.
"""
from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def accumulate_histograms(vals, sat_level, bins, classes, pixel_hist, bin_hist, saturated):
    """Add a batch to the histograms.

    Parameters
    ----------
    vals : (N, 3, P) uint16
        Raw values of the good ROI pixels of the n, 0, p ROIs.
    sat_level : int
        A frame with any value >= this is saturated (not added).
    bins : (N,) int64
        Intensity bin of each frame.
    classes : (P,) int64
        Class of each pixel position.
    pixel_hist : (3, P, 512) int32
        Per-pixel histograms (added to).
    bin_hist : (B, 3, C, 512) int64
        Per-bin, per-class histograms (added to).
    saturated : (N,) bool
        Output: the frames found saturated.
    """
    n, n_ord, n_pix = vals.shape
    for f in range(n):
        sat = False
        for r in range(n_ord):
            for p in range(n_pix):
                if vals[f, r, p] >= sat_level:
                    sat = True
                    break
            if sat:
                break
        saturated[f] = sat
        if sat:
            continue
        b = bins[f]
        for r in range(n_ord):
            for p in range(n_pix):
                v = vals[f, r, p]
                pixel_hist[r, p, v] += 1
                bin_hist[b, r, classes[p], v] += 1
