"""Beam centre and rings on an image: FitCircle and AzInt (azimuthal integration, centre refinement).

FitCircle fits a circle to the bright pixels of a ring (intensity weighted, outliers clipped)
or to points clicked or given on the assembled image. AzInt runs the producer's own azimuthal
function (:class:`smalldata.funcs.azimuthal.AzimuthalBinning`) on an image, optionally after
refining the centre so that the ring is sharpest. Both keep the centre for ``write_config``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.ana.images import DetImage, as_detimage
from smalldata.ana.plotting import click_points
from smalldata.constants import wavelength_m
from smalldata.errors import SmallDataError
from smalldata.geometry import qmap

#: How far from a candidate circle a bright pixel may lie and count for it: 4 DSSC pixels (0.2-0.24 mm).
RING_TOLERANCE_M = 0.9e-3
#: A ring's pixels spread around the fitted circle by at most this fraction of its radius.
RING_MAX_RELATIVE_WIDTH = 0.05


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
    """

    center: Tuple[float, float]
    radius: float
    center_pixel: Tuple[float, float]
    n_points: int


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def fit_circle(x: np.ndarray, y: np.ndarray, weights: Optional[np.ndarray] = None,
               clip: float = 3.0, iterations: int = 8) -> Tuple[float, float, float, np.ndarray]:
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
        new_used = np.isfinite(x) & np.isfinite(y) & (w > 0) & (np.abs(dist) <= clip * spread)
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


def _smoothed(data: np.ndarray, half_width: int) -> np.ndarray:
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


@dataclass
class AzIntResult:
    """An azimuthal integration of an image.

    Attributes
    ----------
    q : ndarray
        Bin centres, m^-1.
    phi : ndarray
        Azimuth bin centres, radians.
    intensity : ndarray, (n_phi, n_q)
        Mean corrected intensity per bin (NaN: empty), in the image's units.
    count : ndarray, (n_phi, n_q)
        Pixels per bin.
    center : (float, float)
        Centre used, metres.
    distance, photon_energy : float
        Metres, eV.
    function : AzimuthalBinning
        The producer's function, set up for the image's modules.
    """

    q: np.ndarray
    phi: np.ndarray
    intensity: np.ndarray
    count: np.ndarray
    center: Tuple[float, float]
    distance: float
    photon_energy: float
    function: object = field(repr=False, default=None)

    @property
    def peak_q(self) -> float:
        """q of the highest bin of the azimuthal mean, m^-1."""
        profile = np.nanmean(self.intensity, axis=0) if self.intensity.ndim == 2 else self.intensity
        return float(self.q[np.nanargmax(profile)])


class AzIntMixin:
    """FitCircle and AzInt of ``SmallDataAna``."""

    def FitCircle(self, image, threshold: Optional[float] = None, points: Optional[Sequence[Sequence[float]]] = None,
                  det: Optional[str] = None, clip: float = 3.0, smooth: int = 1) -> CircleFit:
        """Fit a circle to a ring: the beam centre.

        Parameters
        ----------
        image : DetImage
            E.g. an :meth:`AvImage` showing a ring.
        threshold : float, optional
            Fit the pixels above this value (image units), dropping those more than ``clip``
            spreads off the circle (noise, a speckle spot).
        points : list of (row, col), optional
            Fit these assembled-image points instead. With neither: click points on the ring
            (GUI backend), Enter to finish.
        clip : float
            Drop pixels farther from the circle than this many robust spreads (and refit).
        smooth : int
            Before thresholding, average each pixel with its neighbours within this many rows and
            columns of its module (0: none); averaging cuts the noise that crosses the threshold.
        """
        img = as_detimage(image, self.geometry(det or "dssc"), det or "dssc")
        det = det or img.det
        geometry = img.geometry
        if threshold is None and points is None:
            fig = self._image_axes(img, title="FitCircle: click points on the ring, Enter to finish").figure
            points = click_points(fig, -1, "FitCircle", "threshold=... or points=[(row, col), ...]")
        if threshold is not None:
            x, y = geometry.positions(img.modules)
            values = _smoothed(img.data, smooth)
            with np.errstate(invalid="ignore"):
                bright = np.isfinite(values) & (values > threshold)
            if bright.sum() < 3:
                raise SmallDataError(f"FitCircle: {bright.sum()} pixels above {threshold}; lower the threshold")
            # every bright pixel counts once, and the fit starts from the pixels of the circle most
            # of them lie on: a bright region off the ring (a speckle block) can have more pixels
            # than the ring, and a least-squares start would follow it
            xb, yb = x[bright], y[bright]
            on_ring = ring_consensus(xb, yb, RING_TOLERANCE_M)
            cx, cy, radius, used = fit_circle(xb, yb, on_ring.astype(float), clip)
            width = 1.4826 * float(np.median(np.abs(np.hypot(xb[used] - cx, yb[used] - cy) - radius)))
            if width > RING_MAX_RELATIVE_WIDTH * radius:
                raise SmallDataError(
                    f"FitCircle: the {int(bright.sum())} pixels above {threshold} do not lie on a ring (they spread "
                    f"{width * 1e3:.2f} mm around the best circle, of radius {radius * 1e3:.2f} mm): the ring is "
                    f"probably below the threshold; lower it to just under the ring's values, or give points=")
        else:
            pts = np.asarray(points, dtype=float)
            x, y = geometry.pixel_to_metres(pts[:, 0], pts[:, 1])
            cx, cy, radius, used = fit_circle(x, y, clip=np.inf)
        row, col = geometry.metres_to_pixel(cx, cy)
        fit = CircleFit((cx, cy), radius, (float(row), float(col)), int(used.sum()))
        self._tuned.setdefault("center", {})[det] = fit.center
        ax = self._image_axes(img, title=f"FitCircle: centre ({cx * 1e3:.3f}, {cy * 1e3:.3f}) mm, "
                                         f"R {radius * 1e3:.2f} mm")
        angle = np.linspace(0, 2 * np.pi, 361)
        rows, cols = geometry.metres_to_pixel(cx + radius * np.cos(angle), cy + radius * np.sin(angle))
        ax.plot(cols, rows, "r-", lw=0.8)
        ax.plot([col], [row], "r+", ms=12)
        self.plots.finish(ax.figure, "FitCircle")
        return fit

    def _azimuthal_defaults(self, det: str) -> Dict[str, object]:
        """center, distance, photon_energy of the config's first azimuthal function of ``det`` (or {})."""
        for spec in (self.config.get("detectors", {}).get(det, {}) or {}).get("functions", []) or []:
            if spec.get("type") == "azimuthal":
                return {k: spec[k] for k in ("center", "distance", "photon_energy") if k in spec}
        return {}

    def AzInt(self, image, center: Optional[Sequence[float]] = None, distance: Optional[float] = None,
              photon_energy: Optional[float] = None, q_bins=100, q_range: Optional[Sequence[float]] = None,
              phi_bins=1, refine: bool = False, det: Optional[str] = None, ax=None) -> AzIntResult:
        """Azimuthal integration of an image with the producer's azimuthal function.

        Parameters
        ----------
        image : DetImage
            E.g. an :meth:`AvImage`.
        center, distance, photon_energy
            Metres, metres, eV; defaults: the session's fitted centre, then the config's first
            azimuthal function of the detector.
        q_bins, q_range, phi_bins
            As the ``azimuthal`` function's config keys (m^-1).
        refine : bool
            First move the centre to where the ring is sharpest (largest variance of the
            profile between q bins); the refined centre is kept for :meth:`write_config`.
        """
        from smalldata.funcs.azimuthal import AzimuthalBinning
        from smalldata.plugin.frames import Frames

        img = as_detimage(image, self.geometry(det or "dssc"), det or "dssc")
        det = det or img.det
        defaults = self._azimuthal_defaults(det)
        center = center if center is not None else self._tuned.get("center", {}).get(det, defaults.get("center"))
        distance = distance if distance is not None else defaults.get("distance")
        photon_energy = photon_energy if photon_energy is not None else defaults.get("photon_energy")
        if center is None or distance is None or photon_energy is None:
            raise SmallDataError("AzInt needs center=(x, y) m, distance= m and photon_energy= eV (no azimuthal "
                                 f"function of {det!r} in the config to take them from)")
        x, y = img.geometry.positions(img.modules)
        z = np.zeros_like(x)
        good = np.isfinite(img.data)
        if refine:
            center = self._refine_center(img.data, good, x, y, center, float(distance), float(photon_energy),
                                         q_range)
            self._tuned.setdefault("center", {})[det] = center
        func = AzimuthalBinning("azint", center=tuple(center), distance=distance, photon_energy=photon_energy,
                                q_bins=q_bins, q_range=q_range, phi_bins=phi_bins, solid_angle=False)
        func.setFromDet(SimpleNamespace(modules=img.modules, x=x, y=y, z=z, mask=good, units=img.units or "ADU"))
        empty = np.zeros(1, dtype=np.uint64)
        frames = Frames(np.nan_to_num(img.data)[None], good[None], img.units or "ADU", empty, empty,
                        np.zeros(1, np.uint16), modules=img.modules)
        out = func.process(frames)
        result = AzIntResult(func.q_centers, func.phi_centers, out["mean"][0], out["count"][0],
                             (float(center[0]), float(center[1])), float(distance), float(photon_energy), func)
        self._draw_azint(result, img, ax)
        return result

    @staticmethod
    def _refine_center(data, good, x, y, center, distance, photon_energy, q_range, n_bins: int = 200):
        """The centre (x, y) that maximises the variance between radial bins of the ring profile.

        Rings of constant q are circles of constant radius on the (untilted) detector plane, so
        the profile is binned in radius: the q range converted to radii, in ``n_bins`` bins.
        """
        from scipy.optimize import minimize

        if q_range is None:
            two_theta, _ = qmap.scattering_angles(x[good], y[good], 0.0, tuple(center), distance)
            q_range = np.percentile(qmap.momentum_transfer(two_theta, photon_energy), [1, 99])
        wavelength = wavelength_m(photon_energy)
        r_lo, r_hi = (distance * np.tan(2 * np.arcsin(q * wavelength / (4 * np.pi))) for q in q_range)
        start = np.asarray(center, dtype=float)
        # pixels that can enter the radius range while the centre moves by up to 5 mm
        r_start = np.hypot(x - start[0], y - start[1])
        good = good & (r_start > r_lo - 5e-3) & (r_start < r_hi + 5e-3)
        values = data[good].astype(np.float64)
        xs, ys = x[good], y[good]
        scale = n_bins / (r_hi - r_lo)

        def profile_variance(c):
            idx = ((np.hypot(xs - c[0], ys - c[1]) - r_lo) * scale).astype(np.int64)
            inside = (idx >= 0) & (idx < n_bins)
            n = np.bincount(idx[inside], minlength=n_bins)
            s = np.bincount(idx[inside], weights=values[inside], minlength=n_bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n > 0, s / n, 0.0)
            total = s.sum() / max(n.sum(), 1)
            return -float((n * (mean - total) ** 2).sum() / max(n.sum(), 1))

        step = 2e-3
        simplex = np.array([start, start + [step, 0], start + [0, step]])
        best = minimize(profile_variance, start, method="Nelder-Mead",
                        options={"initial_simplex": simplex, "xatol": 2e-6, "fatol": 0, "maxiter": 200})
        return float(best.x[0]), float(best.x[1])

    def _draw_azint(self, result: AzIntResult, img: DetImage, ax) -> None:
        fig, ax = self.plots.subplots(figsize=(6, 4.5), ax=ax)
        intensity = result.intensity
        if intensity.shape[0] == 1:
            ax.plot(result.q * 1e-9, intensity[0], "-")
            ax.set_ylabel(f"mean intensity ({img.units or '-'})")
        else:
            mesh = ax.pcolormesh(result.q * 1e-9, result.phi, intensity, shading="nearest")
            fig.colorbar(mesh, ax=ax, label=img.units or None)
            ax.set_ylabel("phi (rad)")
        ax.set_xlabel("q (1/nm)")
        cx, cy = result.center
        ax.set_title(f"AzInt: centre ({cx * 1e3:.3f}, {cy * 1e3:.3f}) mm, peak q {result.peak_q * 1e-9:.3f} 1/nm")
        self.plots.finish(fig, "AzInt")
