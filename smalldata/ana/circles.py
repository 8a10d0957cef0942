"""Circles through the pixels of a ring: the fit, the consensus start, and how plausible a fit is.

:func:`fit_circle` is a weighted least-squares circle with outliers clipped;
:func:`ring_consensus` picks the pixels of the thin circle most bright pixels lie on (a ring,
not a bright filled patch); :func:`fit_warnings` says in words what makes a fit implausible
(a circle off the detector, pixels that are no ring, a large residual) and what to change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from smalldata.errors import SmallDataError

#: How far from a candidate circle a bright pixel may lie and count for it: 4 DSSC pixels (0.2-0.24 mm).
RING_TOLERANCE_M = 0.9e-3
#: A ring's pixels spread around the fitted circle by at most this fraction of its radius.
RING_MAX_RELATIVE_WIDTH = 0.05


#: A threshold fit's pixels must cover this fraction of the circle's length over the image's pixels.
MIN_RING_COVERAGE = 0.5
#: A threshold fit whose pixels spread more than this fraction of the radius is warned about.
WARN_RELATIVE_WIDTH = 0.03
#: Given or clicked points farther from the circle than this (robust spread, 3 DSSC pixels) are warned about.
WARN_POINT_RESIDUAL_M = 0.7e-3
#: Sectors of the circle in the coverage test (5 degrees each).
N_SECTORS = 72


@dataclass
class CircleFit:
    """A fitted circle.

    Attributes
    ----------
    center : (float, float)
        Centre (x, y) in metres (extra-geom frame, the producer's ``center``).
    radius : float
        Radius in metres.
    center_pixel : (float, float)
        Centre in assembled-image (row, col).
    n_points : int
        Pixels or points used in the final fit.
    spread : float
        Robust spread (1.4826 x median absolute distance) of those points around the circle, metres.
    coverage : float
        Fraction of the circle's length over the image's pixels that holds fitted pixels (NaN for
        given points).
    warnings : list of str
        Why the fit is implausible and what to change (empty for a good fit); each is also logged.
    """

    center: Tuple[float, float]
    radius: float
    center_pixel: Tuple[float, float]
    n_points: int
    spread: float = float("nan")
    coverage: float = float("nan")
    warnings: List[str] = field(default_factory=list)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def fit_circle(x: np.ndarray, y: np.ndarray, weights: Optional[np.ndarray] = None,
               clip: float = 3.0, iterations: int = 8,
               start: Optional[Tuple[float, float, float, float]] = None) -> Tuple[float, float, float, np.ndarray]:
    """Weighted least-squares circle through points, with outliers beyond ``clip`` spreads dropped.

    Starts from the algebraic (Kasa) fit and minimises ``sum w (|p - c| - R)^2``; the spread is
    the weighted median absolute distance from the circle (x 1.4826), so scattered bright
    pixels away from the ring (noise, a speckle spot) are dropped rather than widen it.
    Returns ``cx, cy, R`` and the bool array of points used.
    """
    from scipy.optimize import least_squares

    x, y = np.asarray(x, float), np.asarray(y, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    used = np.isfinite(x) & np.isfinite(y) & (w > 0)
    if start is not None:  # begin with the points near a known circle (cx, cy, radius, half-width)
        with np.errstate(invalid="ignore"):
            used &= np.abs(np.hypot(x - start[0], y - start[1]) - start[2]) <= start[3]
    if used.sum() < 3:
        raise SmallDataError("a circle needs at least 3 points")
    x0, y0 = np.average(x[used], weights=w[used]), np.average(y[used], weights=w[used])
    for _ in range(iterations):
        dx, dy, ww = x[used] - x0, y[used] - y0, w[used]
        a = np.column_stack([dx, dy, np.ones_like(dx)]) * np.sqrt(ww)[:, None]
        b = (dx ** 2 + dy ** 2) * np.sqrt(ww)
        (p, q, r), *_ = np.linalg.lstsq(a, b, rcond=None)
        cx, cy = x0 + p / 2, y0 + q / 2
        radius = np.sqrt(r + (p ** 2 + q ** 2) / 4)
        sw = np.sqrt(ww)

        def residual(params):
            return sw * (np.hypot(x[used] - params[0], y[used] - params[1]) - params[2])

        cx, cy, radius = least_squares(residual, [cx, cy, radius], x_scale="jac").x
        dist = np.hypot(x - cx, y - cy) - radius
        spread = 1.4826 * _weighted_median(np.abs(dist[used]), w[used])
        # no clipping (clip=inf) keeps every point, also when they lie exactly on the circle (spread 0)
        bound = np.inf if not np.isfinite(clip) else clip * max(spread, 1e-12)
        new_used = np.isfinite(x) & np.isfinite(y) & (w > 0) & (np.abs(dist) <= bound)
        x0, y0 = cx, cy
        if np.array_equal(new_used, used):
            break
        used = new_used
    return float(cx), float(cy), float(abs(radius)), used


def ring_consensus(x: np.ndarray, y: np.ndarray, tolerance: float, trials: int = 400,
                   seed: int = 0) -> np.ndarray:
    """Bool array of the points on the thin circle that passes through the most of them.

    Circles through random triples of points (a fixed seed: the same answer every time), each
    scored by its points within ``tolerance`` (metres) of it. A ring wins over a bright
    filled region (a speckle block), which has more bright pixels but few on any one circle;
    a least-squares fit from all pixels would follow the region.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    best, best_count = np.ones(n, dtype=bool), -1
    for i, j, k in rng.integers(0, n, size=(trials, 3)):
        (ax, ay), (bx, by), (cx, cy) = (x[i], y[i]), (x[j], y[j]), (x[k], y[k])
        d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
        if abs(d) < 1e-18:  # collinear or repeated points
            continue
        ux = ((ax * ax + ay * ay) * (by - cy) + (bx * bx + by * by) * (cy - ay) + (cx * cx + cy * cy) * (ay - by)) / d
        uy = ((ax * ax + ay * ay) * (cx - bx) + (bx * bx + by * by) * (ax - cx) + (cx * cx + cy * cy) * (bx - ax)) / d
        on = np.abs(np.hypot(x - ux, y - uy) - np.hypot(ax - ux, ay - uy)) <= tolerance
        count = int(np.count_nonzero(on))
        if count > best_count:
            best, best_count = on, count
    return best


def smoothed(data: np.ndarray, half_width: int) -> np.ndarray:
    """Mean of each module pixel's finite neighbours within ``half_width`` rows and columns."""
    if half_width <= 0:
        return data
    from scipy.ndimage import uniform_filter

    size = (1, 2 * half_width + 1, 2 * half_width + 1)
    finite = np.isfinite(data)
    total = uniform_filter(np.where(finite, data, 0.0), size=size, mode="constant")
    count = uniform_filter(finite.astype(float), size=size, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, total / count, np.nan)


def robust_spread(x: np.ndarray, y: np.ndarray, cx: float, cy: float, radius: float) -> float:
    """1.4826 x the median absolute distance of points from the circle (metres)."""
    return 1.4826 * float(np.median(np.abs(np.hypot(x - cx, y - cy) - radius)))


def ring_coverage(cx: float, cy: float, radius: float, x: np.ndarray, y: np.ndarray, on_image,
                  n_sectors: int = N_SECTORS, samples: int = 8) -> Tuple[int, int]:
    """Sectors of the circle that lie over the image's pixels, and those of them holding fitted pixels.

    ``on_image(x, y)`` says which points (metres) fall on a pixel with a value. A sector counts as
    holding fitted pixels when it has at least a tenth of their mean number per sector, so a few
    noise pixels do not make a ring.
    """
    angle = (np.arange(n_sectors * samples) + 0.5) * 2 * np.pi / (n_sectors * samples)
    over = on_image(cx + radius * np.cos(angle), cy + radius * np.sin(angle)).reshape(n_sectors, samples)
    available = over.mean(axis=1) >= 0.5
    sector = (np.mod(np.arctan2(y - cy, x - cx), 2 * np.pi) * n_sectors / (2 * np.pi)).astype(int) % n_sectors
    counts = np.bincount(sector, minlength=n_sectors)
    if not available.any():
        return 0, 0
    least = max(1.0, 0.1 * counts[available].sum() / available.sum())
    return int(available.sum()), int((available & (counts >= least)).sum())


def largest_gap(x: np.ndarray, y: np.ndarray, cx: float, cy: float) -> float:
    """The largest angle (radians) around the centre without a point."""
    angles = np.sort(np.mod(np.arctan2(y - cy, x - cx), 2 * np.pi))
    if angles.size < 2:
        return 2 * np.pi
    return float(max(np.diff(angles).max(), 2 * np.pi - angles[-1] + angles[0]))


def fit_warnings(fit: CircleFit, farthest_pixel: float, available: int, given_points: bool,
                 gap: float = 0.0) -> List[str]:
    """What makes ``fit`` implausible, each with what to change (empty: nothing).

    Parameters
    ----------
    fit : CircleFit
        With ``spread`` and, for a threshold fit, ``coverage``.
    farthest_pixel : float
        Distance of the detector's farthest pixel from the fitted centre, metres.
    available : int
        Sectors of the circle over the image's pixels (of :data:`N_SECTORS`).
    given_points : bool
        The fit went through given or clicked points, not thresholded pixels.
    gap : float
        For given points: the largest angle around the centre without a point, radians.
    """
    mm = 1e3
    found = []
    where = f"circle of radius {fit.radius * mm:.2f} mm around ({fit.center[0] * mm:.2f}, {fit.center[1] * mm:.2f}) mm"
    if fit.radius > farthest_pixel or available == 0:
        found.append(f"FitCircle: the {where} lies outside the detector (its farthest pixel is "
                     f"{farthest_pixel * mm:.1f} mm from that centre): no ring was fitted; "
                     + ("click points on the ring itself" if given_points else
                        "choose a threshold just under the ring's values (ana.plotAvImage(img) shows them)"))
    if given_points:
        if gap > np.pi:
            found.append(f"FitCircle: the points leave {np.degrees(gap):.0f} degrees of the {where} empty, so its "
                         "centre is poorly determined; add points around more of the ring")
        if fit.spread > max(WARN_POINT_RESIDUAL_M, 0.01 * fit.radius):
            found.append(f"FitCircle: the points lie {fit.spread * mm:.2f} mm (robust spread) off the {where}: they "
                         "are not on one ring; click them on the ring's crest")
        return found
    if np.isfinite(fit.coverage) and fit.coverage < MIN_RING_COVERAGE:
        found.append(f"FitCircle: the fitted pixels cover {fit.coverage:.0%} of the {where} where the image has "
                     "pixels: they are not on a ring (a bright patch, or a ring below the threshold); choose a "
                     "threshold just under the ring's values, mask the patch (MakeMask), or give points=")
    if fit.spread > WARN_RELATIVE_WIDTH * fit.radius:
        found.append(f"FitCircle: the fitted pixels spread {fit.spread * mm:.2f} mm around the {where} "
                     f"({fit.spread / fit.radius:.1%} of the radius): a broad or noisy band; raise the threshold "
                     "towards the ring's peak, or smooth more (smooth=2)")
    return found
