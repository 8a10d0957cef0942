"""The compiled centroiding pass (numba): photon hits of a batch of camera frames.

A hit is a 2x2 window whose sum exceeds the threshold and is the largest of the windows that
overlap it (ties go to the first in row-major order); its position is the centre of mass of the
4x4 pixels around the window (clipped at the image edges), in pixel-index coordinates (pixel
``(i, j)`` has its centre at ``y = i``, ``x = j``).

A window's sum exceeds the threshold only if one of its pixels exceeds a quarter of it, so the
pass reads each pixel once and looks at the windows only around such pixels; each window is
examined from the first of its pixels (row-major) above that quarter.
"""
from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True, inline="always")
def _wsum(frame, i, j):
    return frame[i, j] + frame[i, j + 1] + frame[i + 1, j] + frame[i + 1, j + 1]


@numba.njit(cache=True, nogil=True)
def _is_peak(frame, i, j, s):
    """Window (i, j) with sum s is at least as large as the 8 windows that overlap it (ties: first wins)."""
    ny, nx = frame.shape
    for di in range(-1, 2):
        ii = i + di
        if ii < 0 or ii >= ny - 1:
            continue
        for dj in range(-1, 2):
            jj = j + dj
            if jj < 0 or jj >= nx - 1 or (di == 0 and dj == 0):
                continue
            t = _wsum(frame, ii, jj)
            if t > s or (t == s and (di < 0 or (di == 0 and dj < 0))):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def _first_above(frame, wi, wj, i, j, q):
    """Pixel (i, j) is the first pixel of window (wi, wj), in row-major order, above q."""
    for ii in range(wi, wi + 2):
        for jj in range(wj, wj + 2):
            if ii == i and jj == j:
                return True
            if frame[ii, jj] > q:
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
    cap = out_frame.shape[0]
    q = threshold / 4
    k = 0
    for f in range(n):
        frame = frames[f]
        for i in range(ny):
            row = frame[i]
            for j in range(nx):
                if row[j] <= q:
                    continue
                # the (up to) four windows holding pixel (i, j), in row-major order
                for wi in range(max(i - 1, 0), min(i, ny - 2) + 1):
                    for wj in range(max(j - 1, 0), min(j, nx - 2) + 1):
                        if not _first_above(frame, wi, wj, i, j, q):
                            continue
                        s = _wsum(frame, wi, wj)
                        if s <= threshold or not _is_peak(frame, wi, wj, s):
                            continue
                        if k < cap:
                            tot = 0.0
                            sy = 0.0
                            sx = 0.0
                            for ii in range(max(wi - 1, 0), min(wi + 3, ny)):
                                for jj in range(max(wj - 1, 0), min(wj + 3, nx)):
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
                                out_y[k] = wi + 0.5
                                out_x[k] = wj + 0.5
                        k += 1
    return k
