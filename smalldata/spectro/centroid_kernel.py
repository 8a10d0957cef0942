"""The compiled centroiding pass (numba): photon hits of a batch of camera frames.

A hit is a 2x2 window whose sum exceeds the threshold and is the largest of the windows that
overlap it (ties go to the first in row-major order); its position is the centre of mass of the
4x4 pixels around the window (clipped at the image edges), in pixel-index coordinates (pixel
``(i, j)`` has its centre at ``y = i``, ``x = j``).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _window_sums(frame, sums):
    ny, nx = frame.shape
    for i in range(ny - 1):
        for j in range(nx - 1):
            sums[i, j] = frame[i, j] + frame[i, j + 1] + frame[i + 1, j] + frame[i + 1, j + 1]


@numba.njit(cache=True, nogil=True)
def _is_peak(sums, i, j, s):
    ny, nx = sums.shape
    for di in range(-1, 2):
        ii = i + di
        if ii < 0 or ii >= ny:
            continue
        for dj in range(-1, 2):
            jj = j + dj
            if jj < 0 or jj >= nx or (di == 0 and dj == 0):
                continue
            t = sums[ii, jj]
            if t > s or (t == s and (di < 0 or (di == 0 and dj < 0))):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def centroid_batch(frames, threshold, out_frame, out_y, out_x, out_sum):
    """Hits of every frame into the output arrays; returns the number of hits found.

    Parameters
    ----------
    frames : (N, ny, nx) float32
        Dark-subtracted frames (ADU); bad pixels set to 0.
    threshold : float
        2x2 sum (ADU) a hit must exceed.
    out_frame, out_y, out_x, out_sum : (capacity,) int64, float64, float64, float64
        Frame index, centre of mass (row, column) and 4x4 sum (ADU) of each hit. When more hits
        exist than fit, the return value is still their total and the caller calls again.
    """
    n, ny, nx = frames.shape
    sums = np.empty((max(ny - 1, 1), max(nx - 1, 1)), np.float32)
    cap = out_frame.shape[0]
    k = 0
    for f in range(n):
        frame = frames[f]
        _window_sums(frame, sums)
        for i in range(ny - 1):
            for j in range(nx - 1):
                s = sums[i, j]
                if s <= threshold:
                    continue
                if not _is_peak(sums, i, j, s):
                    continue
                if k < cap:
                    tot = 0.0
                    sy = 0.0
                    sx = 0.0
                    for ii in range(max(i - 1, 0), min(i + 3, ny)):
                        for jj in range(max(j - 1, 0), min(j + 3, nx)):
                            v = frame[ii, jj]
                            tot += v
                            sy += v * ii
                            sx += v * jj
                    out_frame[k] = f
                    out_sum[k] = tot
                    if tot > 0:
                        out_y[k] = sy / tot
                        out_x[k] = sx / tot
                    else:
                        out_y[k] = i + 0.5
                        out_x[k] = j + 0.5
                k += 1
    return k
