"""Beam centre and rings on an image: FitCircle and AzInt (azimuthal integration, centre refinement).

FitCircle fits a circle to the bright pixels of a ring (:mod:`smalldata.ana.circles`: a
consensus start, then every bright pixel near it, outliers clipped) or to points clicked or
given on the assembled image, and warns when the fit is implausible. AzInt runs the producer's
own azimuthal function (:class:`smalldata.funcs.azimuthal.AzimuthalBinning`) on an image with
the config's binning, optionally after moving the centre to the ring's
(:mod:`smalldata.ana.centre`). Both keep the centre for ``write_config``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.ana.circles import (RING_MAX_RELATIVE_WIDTH, RING_TOLERANCE_M, CircleFit, fit_circle, fit_warnings,
                                   largest_gap, ring_consensus, ring_coverage, robust_spread, smoothed)
from smalldata.ana.centre import refine_centre
from smalldata.ana.images import DetImage, as_detimage
from smalldata.ana.plotting import click_points
from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)
#: keys of the config's azimuthal function that AzInt takes as its defaults
AZINT_CONFIG_KEYS = ("center", "distance", "photon_energy", "q_bins", "q_range", "phi_bins")


def _on_image(img: DetImage):
    """A test of which points (x, y in metres) fall on a pixel of ``img`` with a value."""
    def on_image(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        module, row, col = img.geometry.metres_to_module(x, y)
        ok = np.isin(module, img.modules)
        out = np.zeros(np.shape(x), dtype=bool)
        if ok.any():
            position = np.full(img.geometry.n_modules, -1)
            position[list(img.modules)] = np.arange(len(img.modules))
            index = position[module[ok]]
            r = np.clip(np.rint(row[ok]).astype(int), 0, img.data.shape[1] - 1)
            c = np.clip(np.rint(col[ok]).astype(int), 0, img.data.shape[2] - 1)
            out[ok] = np.isfinite(img.data[index, r, c])
        return out
    return on_image


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
    median : ndarray, (n_q,)
        Median of the corrected pixel values per q bin over all azimuths (NaN: empty).
    """

    q: np.ndarray
    phi: np.ndarray
    intensity: np.ndarray
    count: np.ndarray
    center: Tuple[float, float]
    distance: float
    photon_energy: float
    function: object = field(repr=False, default=None)
    median: Optional[np.ndarray] = field(repr=False, default=None)

    @property
    def peak_q(self) -> float:
        """q of the highest bin of :attr:`median` (of the azimuthal mean without one), m^-1.

        The median, so a bright region covering part of a q bin (a speckle patch) is not taken
        for the ring.
        """
        if self.median is not None and np.isfinite(self.median).any():
            return float(self.q[np.nanargmax(self.median)])
        profile = np.nanmean(self.intensity, axis=0) if self.intensity.ndim == 2 else self.intensity
        return float(self.q[np.nanargmax(profile)])


def _median_profile(values: np.ndarray, q: np.ndarray, used: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Median of ``values`` of the ``used`` pixels per q bin of ``edges`` (NaN for an empty bin)."""
    from scipy import ndimage

    index = np.digitize(q[used], edges) - 1
    inside = (index >= 0) & (index < len(edges) - 1)
    labels = np.arange(len(edges) - 1)
    counts = np.bincount(index[inside], minlength=len(labels))
    median = np.asarray(ndimage.median(values[used][inside], index[inside], labels), dtype=float)
    return np.where(counts > 0, median, np.nan)


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

        Returns
        -------
        CircleFit
            The circle; ``warnings`` lists (and the session logs) what makes it implausible: a
            circle off the detector, pixels or points that are no ring, a large residual.
            Pixels above the threshold that lie on no ring at all are refused in one line.
        """
        img = as_detimage(image, self.geometry(det or "dssc"), det or "dssc")
        det = det or img.det
        geometry = img.geometry
        if threshold is None and points is None:
            fig = self._image_axes(img, title="FitCircle: click points on the ring, Enter to finish").figure
            points = click_points(fig, -1, "FitCircle", "threshold=... or points=[(row, col), ...]")
        if threshold is not None:
            x, y = geometry.positions(img.modules)
            values = smoothed(img.data, smooth)
            with np.errstate(invalid="ignore"):
                bright = np.isfinite(values) & (values > threshold)
            if bright.sum() < 3:
                raise SmallDataError(f"FitCircle: {bright.sum()} pixels above {threshold}; lower the threshold")
            # every bright pixel counts once, and the fit starts from the pixels of the circle most
            # of them lie on: a bright region off the ring (a speckle block) can have more pixels
            # than the ring, and a least-squares start would follow it
            xb, yb = x[bright], y[bright]
            on_ring = ring_consensus(xb, yb, RING_TOLERANCE_M)
            cx, cy, radius, _ = fit_circle(xb[on_ring], yb[on_ring], clip=clip)
            # then every bright pixel near that circle, the band growing to the ring's whole width:
            # the consensus circle passes through three random pixels of the band, not its crest
            cx, cy, radius, used = fit_circle(xb, yb, clip=clip, iterations=40,
                                              start=(cx, cy, radius, RING_TOLERANCE_M))
            width = robust_spread(xb[used], yb[used], cx, cy, radius)
            if width > RING_MAX_RELATIVE_WIDTH * radius:
                raise SmallDataError(
                    f"FitCircle: the {int(bright.sum())} pixels above {threshold} do not lie on a ring (they spread "
                    f"{width * 1e3:.2f} mm around the best circle, of radius {radius * 1e3:.2f} mm): the ring is "
                    f"probably below the threshold; lower it to just under the ring's values, or give points=")
            available, covered = ring_coverage(cx, cy, radius, xb[used], yb[used], _on_image(img))
            coverage = covered / available if available else 0.0
            gap = 0.0
        else:
            pts = np.asarray(points, dtype=float)
            xb, yb = geometry.pixel_to_metres(pts[:, 0], pts[:, 1])
            cx, cy, radius, used = fit_circle(xb, yb, clip=np.inf)
            width = robust_spread(xb, yb, cx, cy, radius)
            available, _ = ring_coverage(cx, cy, radius, xb, yb, _on_image(img))
            coverage, gap = float("nan"), largest_gap(xb, yb, cx, cy)
        row, col = geometry.metres_to_pixel(cx, cy)
        fit = CircleFit((float(cx), float(cy)), float(radius), (float(row), float(col)), int(used.sum()), width,
                        coverage)
        px, py = geometry.positions(range(geometry.n_modules))
        farthest = float(np.nanmax(np.hypot(px - cx, py - cy)))
        fit.warnings = fit_warnings(fit, farthest, available, threshold is None, gap)
        for message in fit.warnings:
            log.warning("%s", message)
        self._tuned.setdefault("center", {})[det] = fit.center
        ax = self._image_axes(img, title=f"FitCircle: centre ({cx * 1e3:.3f}, {cy * 1e3:.3f}) mm, "
                                         f"R {radius * 1e3:.2f} mm" + (" (implausible: see the warnings)"
                                                                       if fit.warnings else ""))
        angle = np.linspace(0, 2 * np.pi, 361)
        rows, cols = geometry.metres_to_pixel(cx + radius * np.cos(angle), cy + radius * np.sin(angle))
        ax.plot(cols, rows, "r-", lw=0.8)
        ax.plot([col], [row], "r+", ms=12)
        self.plots.finish(ax.figure, "FitCircle")
        return fit

    def _azimuthal_defaults(self, det: str) -> Dict[str, object]:
        """Settings of the config's first azimuthal function of ``det`` that AzInt takes (or {})."""
        for spec in (self.config.get("detectors", {}).get(det, {}) or {}).get("functions", []) or []:
            if spec.get("type") == "azimuthal":
                return {k: spec[k] for k in AZINT_CONFIG_KEYS if spec.get(k) is not None}
        return {}

    def AzInt(self, image, center: Optional[Sequence[float]] = None, distance: Optional[float] = None,
              photon_energy: Optional[float] = None, q_bins=None, q_range: Optional[Sequence[float]] = None,
              phi_bins=None, refine: bool = False, det: Optional[str] = None, ax=None) -> AzIntResult:
        """Azimuthal integration of an image with the producer's azimuthal function.

        Parameters
        ----------
        image : DetImage
            E.g. an :meth:`AvImage`.
        center, distance, photon_energy
            Metres, metres, eV; defaults: the session's fitted centre, then the config's first
            azimuthal function of the detector.
        q_bins, q_range, phi_bins
            As the ``azimuthal`` function's config keys (m^-1); defaults: those of the config's
            first azimuthal function of the detector, then the function's own defaults.
        refine : bool
            First move the centre to the centre of the ring: the circle through the ring's radius
            in every azimuth sector (:func:`smalldata.ana.centre.refine_centre`), searched within
            ``q_range``; kept only when the ring is rounder about it than about the start. The
            refined centre is kept for :meth:`write_config`.
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
        binning = {"q_bins": q_bins, "q_range": q_range, "phi_bins": phi_bins}
        binning = {k: v if v is not None else defaults.get(k) for k, v in binning.items()}
        binning = {k: v for k, v in binning.items() if v is not None}
        if refine:
            refined = refine_centre(img.data, good, x, y, center, float(distance), float(photon_energy),
                                    binning.get("q_range"))
            center = refined.center
            log.info("AzInt refine: centre (%.3f, %.3f) mm, ring radius %.2f mm; the ring's radius in %d sectors "
                     "spreads %.3f mm about it, %.3f mm about the start", center[0] * 1e3, center[1] * 1e3,
                     refined.radius * 1e3, refined.sectors, refined.spread * 1e3, refined.start_spread * 1e3)
            self._tuned.setdefault("center", {})[det] = center
        func = AzimuthalBinning("azint", center=tuple(center), distance=distance, photon_energy=photon_energy,
                                solid_angle=False, **binning)
        func.setFromDet(SimpleNamespace(modules=img.modules, x=x, y=y, z=z, mask=good, units=img.units or "ADU"))
        empty = np.zeros(1, dtype=np.uint64)
        frames = Frames(np.nan_to_num(img.data)[None], good[None], img.units or "ADU", empty, empty,
                        np.zeros(1, np.uint16), modules=img.modules)
        out = func.process(frames)
        result = AzIntResult(func.q_centers, func.phi_centers, out["mean"][0], out["count"][0],
                             (float(center[0]), float(center[1])), float(distance), float(photon_energy), func,
                             _median_profile(img.data * func.correction, func.q_map, func.pixel_mask, func.q_edges))
        self._draw_azint(result, img, ax)
        return result

    def _draw_azint(self, result: AzIntResult, img: DetImage, ax) -> None:
        fig, ax = self.plots.subplots(figsize=(6, 4.5), ax=ax)
        intensity = result.intensity
        if intensity.shape[0] == 1:
            ax.plot(result.q * 1e-9, intensity[0], "-", label="mean")
            ax.plot(result.q * 1e-9, result.median, "--", label="median over pixels")
            ax.legend(fontsize=8)
            ax.set_ylabel(f"intensity ({img.units or '-'})")
        else:
            mesh = ax.pcolormesh(result.q * 1e-9, result.phi, intensity, shading="nearest")
            fig.colorbar(mesh, ax=ax, label=img.units or None)
            ax.set_ylabel("phi (rad)")
        ax.set_xlabel("q (1/nm)")
        cx, cy = result.center
        ax.set_title(f"AzInt: centre ({cx * 1e3:.3f}, {cy * 1e3:.3f}) mm, peak q {result.peak_q * 1e-9:.3f} 1/nm")
        self.plots.finish(fig, "AzInt")
