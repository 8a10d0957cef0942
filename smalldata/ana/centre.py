"""Refining a beam centre on a ring: the circle through the ring's radius in every azimuth sector.

Around the current centre the image is cut into azimuth sectors; in each, the ring's radius is
the centroid of the sector's radial profile (the mean per radial bin, background subtracted) in
a window around the ring. A robust circle through these points (outlying sectors, such as
one crossing a bright speckle patch, are clipped) gives the next centre; the window follows the
circle until the centre stops moving. A ring of constant q is a circle on the (untilted)
detector, so at the true centre every sector finds the same radius.

Binning by radius, not by q, keeps the step independent of distance and photon energy; the
ring's window comes from the median radial profile, which a bright patch covering a minority of
each radius does not move.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from smalldata.ana.circles import fit_circle
from smalldata.constants import wavelength_m
from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)

#: Width of a radial bin of the profiles, metres (about one DSSC pixel).
RADIAL_BIN_M = 0.2e-3
#: Azimuth sectors of the per-sector radii.
N_SECTORS = 72
#: The centre has converged when a step moves it less than this (metres).
CONVERGED_M = 1e-7


@dataclass
class Refinement:
    """The result of :func:`refine_centre`.

    Attributes
    ----------
    center : (float, float)
        Refined centre (x, y), metres; the start when refinement did not improve it.
    radius : float
        The ring's radius around it, metres.
    start_spread, spread : float
        Robust spread of the sectors' ring radii around the start and the refined centre, metres
        (the smaller, the rounder the ring about that centre).
    sectors : int
        Sectors that found the ring at the refined centre.
    improved : bool
        Whether the refined centre was kept.
    """

    center: Tuple[float, float]
    radius: float
    start_spread: float
    spread: float
    sectors: int
    improved: bool


def radius_of_q(q: np.ndarray, distance: float, photon_energy: float) -> np.ndarray:
    """Radius (metres) on the detector plane at which momentum transfer ``q`` (m^-1) lies."""
    sin_half = np.clip(np.asarray(q, dtype=float) * wavelength_m(photon_energy) / (4 * np.pi), 0.0, 1.0)
    return distance * np.tan(2 * np.arcsin(sin_half))


def _ring_window(r: np.ndarray, values: np.ndarray, r_lo: float, r_hi: float) -> Tuple[float, float]:
    """The ring's radius and window half-width from the median radial profile in ``[r_lo, r_hi]``."""
    from scipy import ndimage

    n_bins = max(int((r_hi - r_lo) / RADIAL_BIN_M), 3)
    idx = ((r - r_lo) / (r_hi - r_lo) * n_bins).astype(np.int64)
    inside = (idx >= 0) & (idx < n_bins)
    labels = np.arange(n_bins)
    counts = np.bincount(idx[inside], minlength=n_bins)
    profile = np.asarray(ndimage.median(values[inside], idx[inside], labels), dtype=float)
    profile[counts < 10] = np.nan
    if not np.isfinite(profile).any():
        raise SmallDataError("AzInt refine: no pixels in the ring's q range; check q_range, distance and "
                             "photon_energy")
    smooth = np.convolve(np.nan_to_num(profile, nan=np.nanmin(profile)), np.ones(5) / 5, mode="same")
    peak = int(np.argmax(smooth))
    base = float(np.nanpercentile(profile, 10))
    half = base + 0.5 * (smooth[peak] - base)
    left = peak
    while left > 0 and smooth[left] > half:
        left -= 1
    right = peak
    while right < n_bins - 1 and smooth[right] > half:
        right += 1
    centres = r_lo + (labels + 0.5) * (r_hi - r_lo) / n_bins
    sigma = max((right - left) * (r_hi - r_lo) / n_bins / 2.355, 2 * RADIAL_BIN_M)
    return float(centres[peak]), 3.0 * sigma


def sector_radii(x: np.ndarray, y: np.ndarray, values: np.ndarray, center: Sequence[float], radius: float,
                 half_width: float) -> Tuple[np.ndarray, np.ndarray]:
    """Per azimuth sector, the ring's radius about ``center``: angles and radii (metres) of the sectors found.

    The radius of a sector is the centroid of its radial profile (mean per bin of
    :data:`RADIAL_BIN_M`, minus the profile's lowest decile) within ``radius +- half_width``; a
    sector with radial bins missing (module gaps) is left out.
    """
    r = np.hypot(x - center[0], y - center[1])
    near = np.abs(r - radius) < half_width
    n_bins = max(int(2 * half_width / RADIAL_BIN_M), 3)
    rb = ((r[near] - (radius - half_width)) / (2 * half_width) * n_bins).astype(np.int64).clip(0, n_bins - 1)
    angle = np.arctan2(y[near] - center[1], x[near] - center[0])
    sb = ((angle + np.pi) / (2 * np.pi) * N_SECTORS).astype(np.int64) % N_SECTORS
    cell = sb * n_bins + rb
    n = np.bincount(cell, minlength=N_SECTORS * n_bins).reshape(N_SECTORS, n_bins)
    s = np.bincount(cell, weights=values[near], minlength=N_SECTORS * n_bins).reshape(N_SECTORS, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
    complete = (n > 0).mean(axis=1) >= 0.9
    mean = mean[complete]
    base = np.nanpercentile(mean, 10, axis=1)[:, None] if len(mean) else np.zeros((0, 1))
    weight = np.clip(np.nan_to_num(mean - base, nan=0.0), 0.0, None)
    radii_of_bins = radius - half_width + (np.arange(n_bins) + 0.5) * 2 * half_width / n_bins
    total = weight.sum(axis=1)
    found = total > 0
    rho = (weight[found] * radii_of_bins).sum(axis=1) / total[found]
    angles = (np.flatnonzero(complete)[found] + 0.5) * 2 * np.pi / N_SECTORS - np.pi
    return angles, rho


def _spread(angles: np.ndarray, rho: np.ndarray) -> float:
    if len(rho) < 3:
        return float("inf")
    return 1.4826 * float(np.median(np.abs(rho - np.median(rho))))


def refine_centre(data: np.ndarray, good: np.ndarray, x: np.ndarray, y: np.ndarray, center: Sequence[float],
                  distance: float, photon_energy: float, q_range: Optional[Sequence[float]] = None,
                  iterations: int = 30) -> Refinement:
    """The centre of the ring in ``data`` (module images, positions ``x``, ``y`` in metres), from ``center``.

    ``q_range`` (m^-1) bounds where the ring is looked for (default: every pixel). The refined
    centre is kept only when the sectors' radii about it spread less than about the start, so a
    good centre is never made worse.
    """
    values = np.asarray(data, dtype=np.float64)[good]
    xs, ys = x[good], y[good]
    start = np.asarray(center, dtype=float)
    r = np.hypot(xs - start[0], ys - start[1])
    if q_range is None:
        r_lo, r_hi = float(r.min()), float(r.max())
    else:
        r_lo, r_hi = (float(v) for v in radius_of_q(np.asarray(q_range, dtype=float), distance, photon_energy))
    radius, half_width = _ring_window(r, values, r_lo, r_hi)
    angles, rho = sector_radii(xs, ys, values, start, radius, half_width)
    start_spread = _spread(angles, rho)
    current = start.copy()
    for _ in range(iterations):
        if len(rho) < 6:
            break
        px, py = current[0] + rho * np.cos(angles), current[1] + rho * np.sin(angles)
        cx, cy, radius, _ = fit_circle(px, py, clip=3.0)
        step = np.hypot(cx - current[0], cy - current[1])
        current = np.array([cx, cy])
        angles, rho = sector_radii(xs, ys, values, current, radius, half_width)
        if step < CONVERGED_M:
            break
    spread = _spread(angles, rho)
    improved = bool(spread < start_spread)
    if not improved:
        log.info("AzInt refine: the ring is no rounder about any other centre than about (%.3f, %.3f) mm "
                 "(sector radii spread %.3f mm); the centre is kept", start[0] * 1e3, start[1] * 1e3,
                 start_spread * 1e3)
        current, spread = start, start_spread
    return Refinement((float(current[0]), float(current[1])), float(np.median(rho)) if len(rho) else radius,
                      start_spread, spread, int(len(rho)), improved)
