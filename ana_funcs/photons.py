"""Photon assignment in droplets, the photons-per-pixel histogram p(k) and speckle contrast.

Each droplet holds ``n = floor(sum / adu_per_photon + rounding_offset)`` photons. They are
placed greedily: the brightest pixel gets a photon and loses one photon's worth of signal,
repeat ``n`` times. Greedy placement takes the ``n`` largest numbers among
``{x_i - m : m = 0, 1, ...}`` over the droplet's pixels (``x_i`` = pixel value in photons),
so it is solved for all droplets at once: a vectorised bisection finds the integer level
``L`` such that the photons above ``L`` are fewer than ``n``, the pixels then take the
remaining photons at level ``L`` by descending fractional part. No loop per droplet or
per photon; the bisection takes ``log2(max n)`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from smalldata.errors import ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames
from smalldata.plugin.ragged import Ragged

from .droplet import cap_per_event, droplets_of
from .droplet_find import DropletSet, asic_split, find_droplets
from .droplet_params import (
    DropletThresholds,
    check_count,
    check_droplet_params,
    check_photon_params,
    photons_per_droplet,
    resolve_adu_per_photon,
)


@dataclass
class PhotonPixels:
    """Pixels that received photons, grouped by droplet (hence by event).

    Attributes
    ----------
    plane, row, col : ndarray (n,) int64
        Plane (``event * P + p``), row and column of each pixel.
    count : ndarray (n,) int64
        Photons placed on that pixel (>= 1).
    event : ndarray (n,) int64
        Event of each pixel.
    per_droplet : ndarray (n_droplets,) int64
        Photons of each droplet.
    """

    plane: np.ndarray
    row: np.ndarray
    col: np.ndarray
    count: np.ndarray
    event: np.ndarray
    per_droplet: np.ndarray


def greedy_counts(group: np.ndarray, x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Photons per pixel from greedy placement, for many droplets at once.

    Parameters
    ----------
    group : ndarray (n_pix,) int
        Droplet of each pixel, sorted ascending (pixels of a droplet are contiguous).
    x : ndarray (n_pix,) float
        Pixel value in photons. Among equal values, the earlier pixel wins.
    n : ndarray (n_groups,) int
        Photons to place per droplet (>= 0).

    Returns
    -------
    ndarray (n_pix,) int64
        Photons placed on each pixel; sums to ``n`` per droplet.
    """
    k = np.zeros(len(x), dtype=np.int64)
    if len(x) == 0:
        return k
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(x)])
    seg = np.repeat(np.arange(len(starts)), sizes)
    need = np.asarray(n, dtype=np.int64)[group[starts]]
    # one pixel: all photons there; one photon: the brightest pixel (the first of equals)
    single = sizes == 1
    k[starts[single]] = need[single]
    one = (need == 1) & ~single
    if one.any():
        top = np.maximum.reduceat(x, starts)
        first = np.minimum.reduceat(np.where(x == top[seg], np.arange(len(x)), len(x)), starts)
        k[first[one]] = 1
    rest = (need > 1) & ~single
    if rest.any():
        pick = rest[seg]
        sub_seg = seg[pick]
        k[pick] = _greedy_general(np.searchsorted(sub_seg, np.arange(len(starts))[rest]),
                                  np.cumsum(rest)[sub_seg] - 1, x[pick], need[rest])
    return k


def _greedy_general(starts: np.ndarray, seg: np.ndarray, x: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Greedy counts for contiguous segments (``starts``, ``seg`` per pixel) needing ``need`` photons."""
    q = np.floor(x)
    r = x - q
    q = q.astype(np.int64)
    qmax = np.maximum.reduceat(q, starts)
    # level L with count(elements >= L) >= need > count(elements >= L + 1); L in [qmax-need+1, qmax]
    lo = qmax - need + 1
    hi = qmax + 1
    while True:
        open_ = hi - lo > 1
        if not open_.any():
            break
        mid = (lo + hi) // 2
        above = np.add.reduceat(np.maximum(q - mid[seg] + 1, 0), starts)
        ok = above >= need
        lo = np.where(open_ & ok, mid, lo)
        hi = np.where(open_ & ~ok, mid, hi)
    level = lo[seg]
    base = np.maximum(q - level, 0)
    left = need - np.add.reduceat(base, starts)
    eligible = q >= level
    # rank of eligible pixels by descending fractional part, earlier pixel first on ties
    # (parts closer than 2**-32 photon count as equal); one integer key keeps the sort fast
    frac = np.minimum((r * 2.0 ** 32).astype(np.int64), 2 ** 32 - 1)
    order = np.argsort((seg.astype(np.int64) << 32) | (2 ** 32 - 1 - frac), kind="stable")
    elig_sorted = eligible[order]
    csum = np.cumsum(elig_sorted)
    first = csum[starts] - elig_sorted[starts]
    rank = csum - first[seg[order]] - 1
    extra = np.zeros(len(x), dtype=np.int64)
    extra[order] = elig_sorted & (rank < left[seg[order]])
    return base + extra


def assign_photons(drops: DropletSet, adu_per_photon: float, rounding_offset: float = 0.5) -> PhotonPixels:
    """Greedy photon placement in all droplets of a batch."""
    nph = photons_per_droplet(drops.adu, adu_per_photon, rounding_offset)
    sel = nph[drops.pixel_droplet] > 0
    group = drops.pixel_droplet[sel]
    order = np.argsort(group, kind="stable")
    group = group[order]
    x = drops.pixel_value[sel][order] / adu_per_photon
    k = greedy_counts(group, x, nph)
    hit = k > 0
    idx = np.flatnonzero(sel)[order][hit]
    plane = drops.pixel_plane[idx]
    return PhotonPixels(plane=plane, row=drops.pixel_row[idx], col=drops.pixel_col[idx], count=k[hit],
                        event=plane // drops.planes_per_event, per_droplet=nph)


def photon_histogram(pixels: PhotonPixels, n_pixels: np.ndarray, kmax: int) -> np.ndarray:
    """p(k) per event: pixels with k photons for k < kmax, ``k >= kmax`` in the last bin.

    ``n_pixels`` (N,) valid pixels per event; pixels without photons fill bin 0.
    """
    n_events = len(n_pixels)
    k = np.minimum(pixels.count, kmax)
    pk = np.bincount(pixels.event * (kmax + 1) + k, minlength=n_events * (kmax + 1)).reshape(n_events, kmax + 1)
    pk[:, 0] = np.asarray(n_pixels, dtype=np.int64) - pk[:, 1:].sum(axis=1)
    return pk


def contrast_from_pk(pk: np.ndarray, n_pixels: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Speckle contrast from photons-per-pixel histograms, with its statistical error.

    ``beta = (<k^2> - <k> - <k>^2) / <k>^2`` (zero for Poisson light, 1/M for M modes).
    The error propagates the sampling variance of the first two moments (estimated from
    the same histogram) assuming independent pixels; pixels within one speckle are
    correlated, so for speckles larger than a pixel the true error is larger.

    Parameters
    ----------
    pk : ndarray (..., kmax + 1)
        Pixels with k photons (e.g. the ``pk`` output, or its sum over events).
    n_pixels : ndarray (...), optional
        Pixels per histogram; default ``pk.sum(-1)``.

    Returns
    -------
    beta, error : ndarray (...)
        NaN where no photon was seen.
    """
    pk = np.asarray(pk, dtype=np.float64)
    n = pk.sum(axis=-1) if n_pixels is None else np.asarray(n_pixels, dtype=np.float64)
    k = np.arange(pk.shape[-1], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1, m2, m3, m4 = ((pk * k ** j).sum(axis=-1) / n for j in (1, 2, 3, 4))
        beta = (m2 - m1 - m1 ** 2) / m1 ** 2
        d1 = 1.0 / m1 ** 2 - 2.0 * m2 / m1 ** 3
        d2 = 1.0 / m1 ** 2
        var = (d1 ** 2 * (m2 - m1 ** 2) + d2 ** 2 * (m4 - m2 ** 2) + 2 * d1 * d2 * (m3 - m1 * m2)) / n
        err = np.sqrt(np.maximum(var, 0.0))
        bad = ~(m1 > 0)
    return np.where(bad, np.nan, beta), np.where(bad, np.nan, err)


class Photons(DetObjectFunc):
    """Photons per event, the photons-per-pixel histogram p(k), optional photon list.

    As a child of :class:`~smalldata.funcs.droplet.Droplet` it uses the parent's droplets (its own
    droplet parameters are then unused); otherwise it finds droplets itself.

    Parameters
    ----------
    name : str
        Output prefix.
    adu_per_photon : float or None
        Data units per photon; None: 1 for photon data, else the detector gain.
    rounding_offset : float
        Photons of a droplet = ``floor(sum / adu_per_photon + rounding_offset)``, in [0, 1).
    kmax : int
        Last bin of ``pk``; it counts pixels with ``k >= kmax`` photons.
    threshold, threshold_low, threshold_unit, min_sum
        Droplet finding when not a child of a droplet function (see ``Droplet``).
    save_photons : bool
        Also write the photon list (ragged output ``list``: module, row, col, photons
        per pixel hit) and the per-event flag ``capped``.
    max_photons_per_event : int
        At most this many pixel entries per event in the list (the first in detector order).
    """

    def __init__(self, name: str = "photons", adu_per_photon: Optional[float] = None,
                 rounding_offset: float = 0.5, kmax: int = 10, threshold: float = 5.0,
                 threshold_low: float = 3.0, threshold_unit: str = "noise", min_sum: float = 0.0,
                 save_photons: bool = False, max_photons_per_event: int = 10000):
        super().__init__(name)
        check_photon_params(adu_per_photon, rounding_offset)
        check_droplet_params(threshold, threshold_low, threshold_unit, min_sum)
        self.adu_per_photon = None if adu_per_photon is None else float(adu_per_photon)
        self.rounding_offset = float(rounding_offset)
        self.kmax = check_count("kmax", kmax)
        self.threshold = float(threshold)
        self.threshold_low = float(threshold_low)
        self.threshold_unit = threshold_unit
        self.min_sum = float(min_sum)
        self.save_photons = bool(save_photons)
        self.max_photons_per_event = check_count("max_photons_per_event", max_photons_per_event)
        self._thresholds = DropletThresholds(threshold, threshold_low, threshold_unit, name)
        self._app: Optional[float] = self.adu_per_photon

    def needs_noise(self) -> bool:
        """Thresholds in units of the noise take the detector's noise map."""
        return self.threshold_unit == "noise"

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        self._app = resolve_adu_per_photon(self.adu_per_photon, det)
        self._thresholds.set_detector(det, self._app)
        if self._app is None:
            raise ConfigError("adu_per_photon", f"{self.name}: the data are in ADU and the detector has no gain; "
                                                "set adu_per_photon (ADU per photon)")

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        if self._app is None:
            raise ConfigError("adu_per_photon", f"{self.name}: unknown ADU per photon; set adu_per_photon")
        drops = droplets_of(frames)
        if drops is None:
            seed, grow = self._thresholds.for_frames(frames)
            drops = find_droplets(frames.data, frames.valid, seed, grow, self.min_sum,
                                  **asic_split(self.det, frames))
        n = len(frames)
        pixels = assign_photons(drops, self._app, self.rounding_offset)
        n_pixels = frames.valid.reshape(n, -1).sum(axis=1).astype(np.int64)
        out = {"n_photons": np.bincount(drops.event, weights=pixels.per_droplet, minlength=n).astype(np.int64),
               "pk": photon_histogram(pixels, n_pixels, self.kmax),
               "n_pixels": n_pixels}
        if self.save_photons:
            counts = np.bincount(pixels.event, minlength=n)
            keep = cap_per_event(pixels.event, counts, self.max_photons_per_event)
            plane = pixels.plane[keep] % drops.planes_per_event
            if frames.modules is not None:
                module = np.asarray(frames.modules, dtype=np.int16)[plane]
            else:
                module = np.full(len(plane), -1, dtype=np.int16)
            out["list"] = Ragged({"module": module, "row": pixels.row[keep].astype(np.int16),
                                     "col": pixels.col[keep].astype(np.int16),
                                     "photons": pixels.count[keep].astype(np.int32)},
                                    np.minimum(counts, self.max_photons_per_event))
            out["capped"] = counts > self.max_photons_per_event
        return out

    def output_units(self) -> Dict[str, str]:
        return {"n_photons": "photon", "pk": "pixel", "n_pixels": "pixel", "capped": "",
                "list/row": "pixel", "list/col": "pixel", "list/photons": "photon", "list/module": ""}
