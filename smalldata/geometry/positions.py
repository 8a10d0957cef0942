"""DSSC 1M pixel positions from extra-geom.

Positions are in metres in the detector plane (x to the left looking along the beam,
y up, as extra-geom defines them); z is 0 in this plane, the sample-detector distance
is a parameter of the functions that need it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
from smalldata.errors import ConfigError


#: The DSSC 1M geometry file shipped with smalldata (module and tile positions in mm, June 2019;
#: its attributes say where the numbers come from; see docs/geometry.md).
DEFAULT_GEOMETRY_NAME = "dssc_1m_geometry_2019-06.h5"


def default_geometry_file() -> Path:
    """The DSSC 1M geometry file shipped with smalldata (``smalldata/geometry/dssc_1m_geometry_2019-06.h5``)."""
    return Path(__file__).with_name(DEFAULT_GEOMETRY_NAME)


def load_dssc_geometry(geometry_file: Optional[os.PathLike] = None,
                       quadrant_positions: Sequence[Sequence[float]] = DSSC_DEFAULT_QUAD_POSITIONS):
    """Build an ``extra_geom.DSSC_1MGeometry``.

    Parameters
    ----------
    geometry_file : path, optional
        extra-geom DSSC HDF5 geometry file; default :func:`default_geometry_file`.
    quadrant_positions : 4 x 2 floats
        Quadrant corner positions in metres.
    """
    path = Path(geometry_file) if geometry_file is not None else default_geometry_file()
    if not path.is_file():
        raise ConfigError("geometry.file", f"geometry file {path} does not exist; give an extra-geom DSSC .h5 file")
    quads = np.asarray(quadrant_positions, dtype=float)
    if quads.shape != (4, 2):
        raise ConfigError("geometry.quadrant_positions",
                          f"need 4 pairs of (x, y) in metres, got shape {quads.shape}")
    # extra-geom reads the file and the quadrant positions in the same unit (mm by default).
    quads_mm = tuple(tuple(float(v) for v in q * 1e3) for q in quads)
    stat = path.stat()
    return _geometry(str(path.resolve()), stat.st_mtime_ns, stat.st_size, quads_mm)


@functools.lru_cache(maxsize=8)
def _geometry(path: str, mtime_ns: int, size: int, quads_mm: tuple):
    """The geometry of a file as it is now (its modification time and size are part of the key).

    Detectors built one module at a time (``AvImage``) share one geometry object.
    """
    from extra_geom import DSSC_1MGeometry

    try:
        return DSSC_1MGeometry.from_h5_file_and_quad_positions(path, list(quads_mm))
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError("geometry_file", f"{path} is not an extra-geom DSSC geometry file ({type(exc).__name__}: "
                                           f"{exc}); give one such as extra_geom's dssc_geo_june19.h5") from None


def pixel_positions(geometry, modules: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel centre positions x, y, z (each (M, 128, 512) float64, metres) of ``modules``."""
    pos = geometry.get_pixel_positions()[list(modules)]
    return pos[..., 0], pos[..., 1], pos[..., 2]
