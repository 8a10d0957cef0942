"""Compiled (numba) accumulation of the BOZ ROI histograms: one pass over the ROI pixels of a batch.

:func:`accumulate_histograms` does what three ``numpy.bincount`` calls over (frames x pixels)
index arrays would, without materialising those arrays or a copy of the ROI pixels: per frame
the saturation test, then for the unsaturated frames the per-pixel histograms and the
histograms of each frame's intensity bin. It runs pixel by pixel over all frames of the
batch, so a pixel's histogram stays in the cache while it is filled (frame by frame, every
increment would land in another pixel's histogram: a cache miss each). All counts are
integers, so the result does not depend on how frames are split.
"""
from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def accumulate_histograms(data, rows, pixels, sat_level, bins, classes, pixel_hist, bin_hist, saturated):
    """Add a batch to the histograms.

    Parameters
    ----------
    data : (N, 65536) uint16
        Raw frames of the module, flattened.
    rows : (n,) int64
        The frames of ``data`` to use (present).
    pixels : (3, P) int64
        Flat module index of the good pixels of the n, 0, p ROIs (the same positions in each).
    sat_level : int
        A frame with any of those values >= this is saturated (not added).
    bins : (n,) int64
        Histogram row (group and intensity bin) of each used frame.
    classes : (P,) int64
        Class of each pixel position.
    pixel_hist : (3, P, 512) int32
        Per-pixel histograms (added to).
    bin_hist : (B, 3, C, 512) int64
        Per-bin, per-class histograms (added to).
    saturated : (n,) bool
        Output: the used frames found saturated.
    """
    n_ord, n_pix = pixels.shape
    n = len(rows)
    for j in range(n):
        f = rows[j]
        sat = False
        for r in range(n_ord):
            for p in range(n_pix):
                if data[f, pixels[r, p]] >= sat_level:
                    sat = True
                    break
            if sat:
                break
        saturated[j] = sat
    for r in range(n_ord):
        for p in range(n_pix):
            i = pixels[r, p]
            c = classes[p]
            for j in range(n):
                if not saturated[j]:
                    v = data[rows[j], i]
                    pixel_hist[r, p, v] += 1
                    bin_hist[bins[j], r, c, v] += 1
