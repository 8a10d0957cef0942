"""Pixel positions of a plain rectangular sensor (a camera): a grid centred on the beam axis."""
from __future__ import annotations

from typing import Tuple

import numpy as np


def grid_positions(shape: Tuple[int, int], pixel_size: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """Pixel centres x, y, z (each (1, rows, columns) float64, metres) of a flat sensor.

    The sensor is the plane z = 0 (as extra-geom's DSSC modules: the sample distance is a function's
    setting, e.g. the azimuthal ``distance``), its centre on the axis; x grows with the column, y with
    the row (as the image is stored).

    Parameters
    ----------
    shape : (rows, columns)
    pixel_size : (float, float)
        Pitch along rows and columns (metres).
    """
    rows, cols = (int(v) for v in shape)
    y = (np.arange(rows) - (rows - 1) / 2.0) * float(pixel_size[0])
    x = (np.arange(cols) - (cols - 1) / 2.0) * float(pixel_size[1])
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return xx[None], yy[None], np.zeros((1, rows, cols))
