"""Scattering geometry of detector pixels: angles, momentum transfer, corrections, bins.

Conventions (SI units, extra-geom's frame)
------------------------------------------
Pixel centres ``x, y, z`` are in metres in extra-geom's frame (x horizontal, to the
left looking along the beam; y up; z along the beam, offsets from the detector plane).
The sample sits on the beam axis, the beam hits the detector plane at ``(cx, cy)``,
and the plane is perpendicular to the beam at ``distance`` downstream (no tilt).
For a pixel, with ``L = distance + z`` and ``r = hypot(x - cx, y - cy)``:

* ``two_theta = atan2(r, L)`` (radians), the scattering angle;
* ``q = 4 pi / lambda * sin(two_theta / 2)`` (m^-1), ``lambda = h c / E``;
* ``phi = atan2(y - cy, x - cx)`` (radians, in (-pi, pi]), the azimuth, 0 along +x;
* the solid-angle factor ``cos(two_theta)**3``, the pixel's solid angle relative to
  that of a pixel at normal incidence at the same distance;
* the polarisation factor for a beam whose intensity is the fraction ``p`` linearly
  polarised along x (horizontal) and ``1 - p`` along y:
  ``P = p (1 - sin^2(2theta) cos^2(phi)) + (1 - p) (1 - sin^2(2theta) sin^2(phi))``,
  which is ``0.5 (1 + cos^2(2theta) - f cos(2 phi) sin^2(2theta))`` with ``f = 2p - 1``.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from smalldata.constants import wavelength_m
from smalldata.errors import ConfigError

BinSpec = Union[int, Sequence[float]]


def scattering_angles(x: np.ndarray, y: np.ndarray, z: np.ndarray,
                      center: Tuple[float, float], distance: float) -> Tuple[np.ndarray, np.ndarray]:
    """Scattering angle and azimuth of each pixel.

    Parameters
    ----------
    x, y, z : ndarray
        Pixel centres in metres (extra-geom frame); any identical shapes.
    center : (float, float)
        Beam position ``(cx, cy)`` on the detector plane, metres.
    distance : float
        Sample to detector-plane distance, metres.

    Returns
    -------
    two_theta, phi : ndarray, float64
        Radians; ``phi`` in (-pi, pi], 0 along +x, pi/2 along +y.
    """
    dx = np.asarray(x, dtype=np.float64) - center[0]
    dy = np.asarray(y, dtype=np.float64) - center[1]
    length = distance + np.asarray(z, dtype=np.float64)
    two_theta = np.arctan2(np.hypot(dx, dy), length)
    phi = np.arctan2(dy, dx)
    return two_theta, phi


def momentum_transfer(two_theta: np.ndarray, photon_energy: float) -> np.ndarray:
    """``q = 4 pi / lambda * sin(two_theta / 2)`` in m^-1 for a photon energy in eV."""
    return (4.0 * np.pi / wavelength_m(photon_energy)) * np.sin(0.5 * np.asarray(two_theta))


def solid_angle_factor(two_theta: np.ndarray) -> np.ndarray:
    """Pixel solid angle relative to normal incidence, ``cos(two_theta)**3``."""
    return np.cos(two_theta) ** 3


def polarization_factor(two_theta: np.ndarray, phi: np.ndarray, horizontal_fraction: float) -> np.ndarray:
    """Fraction of the scattered intensity a polarised beam keeps at ``(two_theta, phi)``.

    ``horizontal_fraction`` is the part of the beam intensity polarised along x
    (1: linear horizontal, 0.5: unpolarised or circular, 0: linear vertical).
    """
    factor = 2.0 * horizontal_fraction - 1.0
    cos2 = np.cos(two_theta) ** 2
    return 0.5 * (1.0 + cos2 - factor * np.cos(2.0 * phi) * (1.0 - cos2))


#: Most equal bins a bin count may ask for (a pixel's resolution is far coarser: 1M pixels in all).
MAX_BINS = 100_000


def bin_edges(param: str, bins: BinSpec, value_range: Optional[Sequence[float]],
              values: Optional[np.ndarray] = None, limits: Tuple[float, float] = (0.0, np.inf)) -> np.ndarray:
    """Bin edges from a bin count and range, or from explicit edges.

    Parameters
    ----------
    param : str
        Config key of ``bins`` (for error messages); the range's key is ``param``
        with ``_bins`` replaced by ``_range``.
    bins : int or sequence of float
        Number of equal bins, or the edges (at least 2, strictly increasing).
    value_range : (float, float) or None
        Range of the equal bins; None: ``[min(values), max(values)]``.
    values : ndarray, optional
        Values the default range is taken from.
    limits : (float, float)
        Allowed interval of edges.

    Returns
    -------
    ndarray, float64
        ``n + 1`` strictly increasing edges.
    """
    range_param = param.replace("_bins", "_range")
    lo_lim, hi_lim = limits
    if isinstance(bins, (bool, np.bool_)):
        raise ConfigError(param, f"{bins!r} is not a bin count; give a positive integer or a list of edges")
    if isinstance(bins, Integral):
        if bins < 1:
            raise ConfigError(param, f"{bins} bins; need a positive number of bins or a list of edges")
        if bins > MAX_BINS:  # each bin costs 8 bytes per frame in the output, more in the sums and tables
            raise ConfigError(param, f"{bins} bins would need about {8 * bins / 2**30:.1f} GiB per frame of output "
                                     f"and more for the bin tables; use at most {MAX_BINS} bins")
        if value_range is None:
            if values is None or values.size == 0:
                raise ConfigError(range_param, "no good pixel to take the default range from; "
                                  f"give {range_param} or check the mask")
            lo, hi = float(np.min(values)), float(np.max(values))
            if not hi > lo:
                hi = lo + max(abs(lo), 1.0) * 1e-9
        else:
            lo, hi = check_range(range_param, value_range, limits)
        return np.linspace(lo, hi, int(bins) + 1)
    if is_real(bins):
        raise ConfigError(param, f"{bins!r} is not a whole number of bins; give an integer or a list of edges")
    try:
        edges = np.asarray(bins, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(param, f"{bins!r} is neither a bin count nor a list of edges") from None
    if edges.ndim != 1 or edges.size < 2:
        raise ConfigError(param, f"edges must be a flat list of at least 2 numbers, got shape {edges.shape}")
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ConfigError(param, "edges must be finite and strictly increasing")
    if edges[0] < lo_lim or edges[-1] > hi_lim:
        raise ConfigError(param, f"edges must lie within [{lo_lim:g}, {hi_lim:g}], "
                          f"got [{edges[0]:g}, {edges[-1]:g}]")
    if value_range is not None:
        raise ConfigError(range_param, f"{param} already gives the edges; leave {range_param} unset")
    return edges


def check_range(param: str, value_range: Sequence[float], limits: Tuple[float, float]) -> Tuple[float, float]:
    """Validate a ``(low, high)`` pair within ``limits``; returns it as floats."""
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ConfigError(param, f"{value_range!r} is not a pair (low, high) of numbers") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or not hi > lo:
        raise ConfigError(param, f"({lo:g}, {hi:g}) is empty; need finite low < high")
    if lo < limits[0] or hi > limits[1]:
        raise ConfigError(param, f"({lo:g}, {hi:g}) must lie within [{limits[0]:g}, {limits[1]:g}]")
    return lo, hi


def digitize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value: bin k is ``[e_k, e_k+1)``, the last bin also holds ``e_n``.

    Values outside ``[e_0, e_n]`` (or NaN) get -1. Returns int64 of ``values``' shape.
    """
    index = np.searchsorted(edges, values, side="right") - 1
    n = edges.size - 1
    index[values == edges[-1]] = n - 1
    index[(index < 0) | (index >= n)] = -1
    return index


def check_pair(param: str, value, finite: bool = True) -> Tuple[float, float]:
    """A pair of floats (e.g. a centre), or ConfigError naming ``param``."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(param, f"{value!r} is not a pair of numbers (x, y)") from None
    if finite and not (np.isfinite(a) and np.isfinite(b)):
        raise ConfigError(param, f"({a}, {b}) must be finite")
    return a, b


def is_real(value) -> bool:
    """True for a real number that is not a bool."""
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
