"""Curvature of the hRIXS spectral lines: a parabola, its correction and its fit to an elastic line.

Rows (y) are the dispersive axis, columns (x) the non-dispersive one. A line of one energy lies on
``y = y0 + c1 * x + c2 * x**2``; the corrected coordinate ``y - (c1 * x + c2 * x**2)`` is the same
along the line (``y0``), so it maps to energy alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from smalldata.errors import DataError


@dataclass(frozen=True)
class Curvature:
    """The parabola of the spectral lines.

    Parameters
    ----------
    c1 : float
        Slope (rows per column).
    c2 : float
        Curvature (rows per column squared).
    """

    c1: float = 0.0
    c2: float = 0.0

    def shift(self, x: np.ndarray) -> np.ndarray:
        """Row shift ``c1 * x + c2 * x**2`` of the lines at column(s) x."""
        x = np.asarray(x, dtype=np.float64)
        return (self.c2 * x + self.c1) * x

    def correct(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Corrected row coordinate of positions (y, x)."""
        return np.asarray(y, dtype=np.float64) - self.shift(x)


def line_centres(image: np.ndarray, columns_per_slice: int = 16,
                 rows: Optional[Tuple[int, int]] = None, half_width: int = 6,
                 min_snr: float = 8.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row centre of the brightest line in slices of columns of an image.

    Each slice's row profile (summed over its columns) is searched for its maximum; the centre is the
    centre of mass of ``2 * half_width + 1`` rows around it, above the profile's median. A slice
    whose maximum is below ``min_snr`` robust widths of its profile shows no line and is skipped.

    Parameters
    ----------
    image : (ny, nx) array
        Dark-subtracted image, e.g. the sum of an elastic-line run's frames.
    columns_per_slice : int
    rows : (first, stop), optional
        Rows to search.
    half_width : int
    min_snr : float

    Returns
    -------
    x, y, weight : (S,) float64
        Slice centre column, line centre row and the line's summed signal per slice.
    """
    image = np.asarray(image, dtype=np.float64)
    ny, nx = image.shape
    r0, r1 = rows if rows is not None else (0, ny)
    n_slices = nx // columns_per_slice
    if n_slices < 3:
        raise DataError(f"{nx} columns give fewer than 3 slices of {columns_per_slice}; use narrower slices")
    xs, ys, ws = [], [], []
    for s in range(n_slices):
        c0 = s * columns_per_slice
        profile = image[r0:r1, c0:c0 + columns_per_slice].sum(axis=1)
        profile = profile - np.median(profile)
        width = 1.4826 * np.median(np.abs(profile))
        m = int(np.argmax(profile))
        if profile[m] <= min_snr * width:
            continue
        lo, hi = max(m - half_width, 0), min(m + half_width + 1, len(profile))
        w = np.clip(profile[lo:hi], 0, None)
        if w.sum() <= 0:
            continue
        xs.append(c0 + (columns_per_slice - 1) / 2.0)
        ys.append(r0 + float(np.dot(w, np.arange(lo, hi)) / w.sum()))
        ws.append(float(w.sum()))
    return np.array(xs), np.array(ys), np.array(ws)


def fit_curvature(image: np.ndarray, columns_per_slice: int = 16, rows: Optional[Tuple[int, int]] = None,
                  half_width: int = 6, min_snr: float = 8.0) -> Tuple[Curvature, float]:
    """Fit the parabola of an elastic line.

    Parameters
    ----------
    image : (ny, nx) array
        Dark-subtracted image with one bright line (the sum of an elastic-line run's frames).
    columns_per_slice, rows, half_width, min_snr
        See :func:`line_centres`.

    Returns
    -------
    curvature : Curvature
    y0 : float
        Row of the line at column 0.
    """
    x, y, w = line_centres(image, columns_per_slice, rows, half_width, min_snr)
    if len(x) < 3:
        raise DataError("fewer than 3 column slices show a line; is this an elastic-line run, with its dark?")
    c2, c1, y0 = np.polyfit(x, y, 2, w=np.sqrt(w))
    return Curvature(float(c1), float(c2)), float(y0)
