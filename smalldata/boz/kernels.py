"""Compiled (numba) BOZ loops: the ROI histograms of ``smd_boz`` and the boz function's ROI sums.

:func:`accumulate_histograms` does what three ``numpy.bincount`` calls over (frames x pixels)
index arrays would, without materialising those arrays or a copy of the ROI pixels: per frame
the saturation test, then for the unsaturated frames the per-pixel histograms and the
histograms of each frame's intensity bin. It runs pixel by pixel over all frames of the
batch, so a pixel's histogram stays in the cache while it is filled (frame by frame, every
increment would land in another pixel's histogram: a cache miss each). All counts are
integers, so the result does not depend on how frames are split.

:func:`frame_sums` gives the mean image's pixel sums and each frame's intensity proxy in one pass.
:func:`frame_roi_sums` does the boz function's per-frame work (raw values back, table, pedestal,
flat field, sums, saturation) in one pass over the ROI pixels instead of a numpy pass per step.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from smalldata.constants import DSSC_ADC_MAX


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


@njit(cache=True, nogil=True)
def frame_roi_sums(data, valid, present, data_offsets, gain, pedestal, ped_offsets, cells, common, weights, lut,
                   sat_level, sums, saturated):
    """The boz function's per-frame work in one pass over the ROI pixels.

    For every good pixel of the three ROIs: the raw value back from the calibrated one,
    ``raw = clip(rint(value * gain + pedestal[cell]), 0, 511)`` (float32, as numpy does it),
    then ``(lut[raw] - pedestal[cell]) * weight`` summed in float64 per ROI, and the frame
    flagged when a raw value reaches ``sat_level``. A statically good pixel that the frame
    marks invalid while its module is present read the ADC maximum (511): the detector
    invalidates saturated pixels and may hold any value for them, so 511 is taken.

    Parameters
    ----------
    data : (N, h', w') float32
        Calibrated values of the module (any region holding the ROIs).
    valid : (N, h', w') bool
        The frames' validity of the same pixels.
    present : (N,) bool
        Whether the module recorded the frame.
    data_offsets : (3, 2) int64
        Row and column of each ROI's corner in ``data``.
    gain : (128, 512) float32
        ADU per calibrated unit (1 for ADU frames).
    pedestal : (C, 128, 512) float32
    ped_offsets : (3, 2) int64
        Row and column of each ROI's corner in the module.
    cells : (N,) int64
        Pedestal cell of each frame.
    common : (h, w) bool
        Pixels used (good in the three ROIs).
    weights : (3, h, w) float32
        Per-pixel factor of each ROI (the inverse flat field; 1 for ``0``).
    lut : (512,) float32
        Non-linearity table.
    sat_level : int
    sums : (N, 3) float64
        Output: the ROI sums (ADU).
    saturated : (N,) bool
        Output.
    """
    n = data.shape[0]
    h, w = common.shape
    for f in range(n):
        c = cells[f]
        sat = False
        for k in range(3):
            dy, dx = data_offsets[k, 0], data_offsets[k, 1]
            py, px = ped_offsets[k, 0], ped_offsets[k, 1]
            total = 0.0
            for y in range(h):
                for x in range(w):
                    if not common[y, x]:
                        continue
                    ped = pedestal[c, py + y, px + x]
                    if present[f] and not valid[f, dy + y, dx + x]:
                        r = DSSC_ADC_MAX
                    else:
                        r = int(np.rint(data[f, dy + y, dx + x] * gain[py + y, px + x] + ped))
                        r = min(max(r, 0), DSSC_ADC_MAX)
                    if r >= sat_level:
                        sat = True
                    total += np.float64((lut[r] - ped) * weights[k, y, x])
            sums[f, k] = total
        saturated[f] = sat


@njit(cache=True, nogil=True)
def frame_sums(data, raw_sum, intensity):
    """Per-pixel sums over frames and per-frame sums over pixels, in one pass.

    Parameters
    ----------
    data : (N, P) uint16
        Raw frames, flattened.
    raw_sum : (P,) int64
        Added to: each pixel's sum over the frames.
    intensity : (N,) int64
        Output: each frame's sum over the pixels.
    """
    n, m = data.shape
    for f in range(n):
        s = 0
        for i in range(m):
            v = data[f, i]
            raw_sum[i] += v
            s += v
        intensity[f] = s
