"""hRIXS spectra per frame: by centroiding (photon hits) and by integration (pixel-overlap binning).

Both take the curvature and the energy calibration and return ``(N, n_bins)`` arrays on given
energy bin edges (eV, increasing).

Integration: pixel ``(i, j)`` covers the corrected rows ``i - shift(j) -+ 0.5``, so the energies
between the calibration at both edges; its value is shared among the energy bins in proportion to
the overlap of that interval with each bin. The weights form a sparse matrix built once per
geometry (:class:`OverlapBinning`), so a batch costs one sparse product.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse

from .calibration import EnergyCalibration
from .centroid import Hits
from .curvature import Curvature


def hit_energies(hits: Hits, curvature: Curvature, calibration: EnergyCalibration) -> np.ndarray:
    """(H,) energy (eV) of each hit: its curvature-corrected row through the calibration."""
    return calibration(curvature.correct(hits.y, hits.x))


def spectrum_from_hits(hits: Hits, curvature: Curvature, calibration: EnergyCalibration,
                       edges: np.ndarray) -> np.ndarray:
    """Photons per energy bin and frame, double hits counted twice.

    Parameters
    ----------
    hits : Hits
        From :func:`smalldata.spectro.centroid.centroid` of N frames.
    curvature, calibration
    edges : (B + 1,) float
        Energy bin edges (eV), increasing.

    Returns
    -------
    (N, B) float64 photons
    """
    edges = np.asarray(edges, dtype=np.float64)
    n, nb = len(hits.counts), len(edges) - 1
    e = hit_energies(hits, curvature, calibration)
    b = np.searchsorted(edges, e, side="right") - 1
    inside = (b >= 0) & (b < nb)
    flat = hits.frame[inside] * nb + b[inside]
    out = np.bincount(flat, weights=hits.photons[inside], minlength=n * nb)
    return out.reshape(n, nb)


class OverlapBinning:
    """Pixel-overlap binning of camera images onto energy bins.

    Parameters
    ----------
    shape : (ny, nx)
        Image shape (rows dispersive).
    curvature : Curvature
    calibration : EnergyCalibration
    edges : (B + 1,) float
        Energy bin edges (eV), increasing.
    mask : (ny, nx) bool, optional
        True = good pixel; bad pixels contribute nothing.
    """

    def __init__(self, shape: Tuple[int, int], curvature: Curvature, calibration: EnergyCalibration,
                 edges: np.ndarray, mask: Optional[np.ndarray] = None):
        ny, nx = (int(v) for v in shape)
        self.shape = (ny, nx)
        self.edges = np.asarray(edges, dtype=np.float64)
        yc = np.arange(ny, dtype=np.float64)[:, None] - curvature.shift(np.arange(nx))[None, :]
        e_a, e_b = calibration(yc - 0.5), calibration(yc + 0.5)
        lo, hi = np.minimum(e_a, e_b).ravel(), np.maximum(e_a, e_b).ravel()
        width = hi - lo
        nb = len(self.edges) - 1
        first = np.clip(np.searchsorted(self.edges, lo, side="right") - 1, 0, nb - 1)
        last = np.clip(np.searchsorted(self.edges, hi, side="left") - 1, 0, nb - 1)
        good = np.ones(ny * nx, bool) if mask is None else np.asarray(mask, bool).ravel()
        rows, cols, vals = [], [], []
        pix = np.arange(ny * nx)
        for k in range(int((last - first).max()) + 1 if len(pix) else 0):
            b = np.minimum(first + k, nb - 1)
            sel = good & (first + k <= last)
            overlap = np.minimum(hi, self.edges[b + 1]) - np.maximum(lo, self.edges[b])
            sel &= overlap > 0
            rows.append(pix[sel])
            cols.append(b[sel])
            vals.append(overlap[sel] / width[sel])
        self.weights = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                               shape=(ny * nx, nb))
        #: (B,) pixels' worth of area per bin: the sum of the weights (normalises to one pixel)
        self.coverage = np.asarray(self.weights.sum(axis=0)).ravel()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, B) float64: each bin's share of the frames' pixel values (ADU, or photons if calibrated)."""
        frames = np.asarray(frames)
        n = frames.shape[0]
        flat = frames.reshape(n, -1).astype(np.float64, copy=False)
        return np.asarray((self.weights.T @ flat.T).T)

    def per_pixel(self, frames: np.ndarray) -> np.ndarray:
        """(N, B) float64: :meth:`__call__` divided by the bin's coverage (mean value of one pixel); NaN where empty."""
        out = self(frames)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.coverage > 0, out / self.coverage, np.nan)
