"""The hRIXS curvature from an elastic-line run: the dark-subtracted sum of its frames, the parabola
through the line's centres (:func:`~smalldata.spectro.curvature.fit_curvature`) and its uncertainty.

The uncertainty is that of a weighted least-squares fit whose weights are the slices' line signals
(as in ``fit_curvature``), scaled by the scatter of the centres about the parabola: the covariance
``s**2 (A^T W A)^-1`` with ``s**2 = sum(w r**2) / (S - 3)`` over S slices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from smalldata.errors import DataError

from .camerasetup import CameraSetup, checked_settings, iter_frames, load_dark, open_run
from .curvature import Curvature, fit_curvature, line_centres


@dataclass
class CurvatureFit:
    """The curvature of an elastic-line run.

    Attributes
    ----------
    curvature : Curvature
    y0 : float
        Row of the line at column 0.
    errors : (3,) float64
        Standard errors of c1, c2 and y0 (NaN with only 3 slices).
    x, y, weight : (S,) float64
        Slice centre column, line centre row and line signal of each slice.
    image : (ny, nx) float64
        Sum of the dark-subtracted frames (ADU), bad pixels 0.
    run, n_trains : int
    dark : str
        The dark used (its file, or its run).
    """

    curvature: Curvature
    y0: float
    errors: np.ndarray
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    image: np.ndarray
    run: int
    n_trains: int
    dark: str

    def line_row(self, x: np.ndarray) -> np.ndarray:
        """Row of the fitted line at column(s) x."""
        return self.y0 + self.curvature.shift(x)


def fit_curvature_with_errors(image: np.ndarray, columns_per_slice: int = 16, rows: Optional[Tuple[int, int]] = None,
                              half_width: int = 6, min_snr: float = 8.0):
    """:func:`fit_curvature` and the standard errors of ``(c1, c2, y0)``.

    Returns
    -------
    curvature : Curvature
    y0 : float
    errors : (3,) float64
    centres : (x, y, weight) of the slices
    """
    curvature, y0 = fit_curvature(image, columns_per_slice, rows, half_width, min_snr)
    x, y, w = line_centres(image, columns_per_slice, rows, half_width, min_snr)
    a = np.stack([x ** 0, x, x ** 2], axis=1)
    resid = y - a @ np.array([y0, curvature.c1, curvature.c2])
    if len(x) > 3:
        s2 = float(np.sum(w * resid ** 2) / (len(x) - 3))
        cov = s2 * np.linalg.inv(a.T @ (w[:, None] * a))
        err_y0, err_c1, err_c2 = np.sqrt(np.diag(cov))
    else:
        err_y0 = err_c1 = err_c2 = float("nan")
    return curvature, y0, np.array([err_c1, err_c2, err_y0]), (x, y, w)


def curvature_from_run(setup: CameraSetup, run: int, columns_per_slice: int = 16,
                       rows: Optional[Tuple[int, int]] = None, max_trains: Optional[int] = None) -> CurvatureFit:
    """Fit the curvature of the elastic line of run ``run`` of the setup's camera.

    Parameters
    ----------
    setup : CameraSetup
    run : int
        The elastic-line run.
    columns_per_slice : int
    rows : (first, stop), optional
        Rows to search for the line.
    max_trains : int, optional
        Use only the first trains.
    """
    dark, dark_name = load_dark(setup)
    data = open_run(setup, run)
    what = f"run {run}"
    checked_settings(setup, data, dark, dark_name, what)
    total = np.zeros(setup.preset.shape, np.float64)
    n = 0
    for _, frames in iter_frames(data, setup.preset, what, max_trains):
        total += frames.sum(axis=0, dtype=np.float64)
        n += len(frames)
    image = np.where(dark.mask, total - n * dark.mean.astype(np.float64), 0.0)
    try:
        curvature, y0, errors, (x, y, w) = fit_curvature_with_errors(image, columns_per_slice, rows)
    except DataError as exc:
        raise DataError(f"{what} ({n} trains, {dark_name}): {exc}") from None
    return CurvatureFit(curvature, y0, errors, x, y, w, image, int(run), n, dark_name)
