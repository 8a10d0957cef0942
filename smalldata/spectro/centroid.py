"""Photon centroiding of hRIXS camera frames: single and double hits with sub-pixel positions.

Thresholds are in ADU, or in noise sigmas: ``threshold_sigma`` x the noise of a 2x2 sum
(``2 x`` the median pixel noise of the good pixels, for four independent pixels). A hit whose
4x4 sum exceeds ``double_threshold`` (ADU) is a double hit (two photons at one place). The hot
loop is the compiled pass of :mod:`.centroid_kernel`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from smalldata.errors import ConfigError

from .centroid_kernel import centroid_batch


@dataclass
class Hits:
    """Photon hits of a batch of N frames, flat in frame order.

    Attributes
    ----------
    counts : (N,) int64
        Hits per frame (a double hit counts once here).
    frame : (H,) int64
        Frame index of each hit.
    y, x : (H,) float64
        Centre of mass in pixels (row, column; pixel (i, j) has its centre at (i, j)).
    amplitude : (H,) float64
        Sum of the 4x4 pixels around the hit (ADU).
    double : (H,) bool
        True for a double hit.
    """

    counts: np.ndarray
    frame: np.ndarray
    y: np.ndarray
    x: np.ndarray
    amplitude: np.ndarray
    double: np.ndarray

    @property
    def photons(self) -> np.ndarray:
        """(H,) int64: photons per hit (1 or 2)."""
        return 1 + self.double.astype(np.int64)

    def photons_per_frame(self) -> np.ndarray:
        """(N,) int64: photons per frame, double hits counted twice."""
        return np.bincount(self.frame, weights=self.photons, minlength=len(self.counts)).astype(np.int64)


def resolve_threshold(threshold_adu: Optional[float], threshold_sigma: Optional[float],
                      noise: Optional[np.ndarray] = None, mask: Optional[np.ndarray] = None) -> float:
    """The 2x2-sum threshold in ADU, from ADU or from noise sigmas (exactly one of them).

    Parameters
    ----------
    threshold_adu : float or None
    threshold_sigma : float or None
        Multiples of the noise of a 2x2 sum, ``2 * median(noise[mask])``.
    noise : (ny, nx) array, optional
        Pixel noise (ADU), needed with ``threshold_sigma``.
    mask : (ny, nx) bool, optional
        True = good pixel.
    """
    if (threshold_adu is None) == (threshold_sigma is None):
        raise ConfigError("threshold", "give the hit threshold either in ADU (threshold_adu) or in noise "
                                       "sigmas (threshold_sigma), not both or neither")
    if threshold_adu is not None:
        if not np.isfinite(threshold_adu) or threshold_adu <= 0:
            raise ConfigError("threshold_adu", f"{threshold_adu} is not a positive number of ADU")
        return float(threshold_adu)
    if not np.isfinite(threshold_sigma) or threshold_sigma <= 0:
        raise ConfigError("threshold_sigma", f"{threshold_sigma} is not a positive number of sigmas")
    if noise is None:
        raise ConfigError("threshold_sigma", "a threshold in noise sigmas needs the camera's dark noise; "
                                             "load a dark or give threshold_adu")
    good = np.asarray(noise)[mask] if mask is not None else np.asarray(noise).ravel()
    return float(threshold_sigma * 2.0 * np.median(good))


def centroid(frames: np.ndarray, threshold: float, double_threshold: float = np.inf,
             mask: Optional[np.ndarray] = None) -> Hits:
    """Photon hits of a batch of dark-subtracted frames.

    Parameters
    ----------
    frames : (N, ny, nx) array
        Dark-subtracted frames (ADU).
    threshold : float
        2x2 sum (ADU) a hit must exceed (:func:`resolve_threshold`).
    double_threshold : float
        4x4 sum (ADU) above which a hit is double; inf = no double hits.
    mask : (ny, nx) bool, optional
        True = good pixel; bad pixels count as 0.

    Returns
    -------
    Hits
    """
    data = np.asarray(frames, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"frames must be (N, ny, nx), got shape {data.shape}")
    if mask is not None:
        data = np.where(mask, data, np.float32(0))
    data = np.ascontiguousarray(data)
    cap = 4096 * (data.shape[0] + 1)  # enough for a busy frame; a second call when not
    while True:
        out_f = np.empty(cap, np.int64)
        out_y, out_x, out_s = (np.empty(cap, np.float64) for _ in range(3))
        k = centroid_batch(data, np.float32(threshold), out_f, out_y, out_x, out_s)
        if k <= cap:
            break
        cap = k
    out_f, out_y, out_x, out_s = out_f[:k], out_y[:k], out_x[:k], out_s[:k]
    counts = np.bincount(out_f, minlength=data.shape[0]).astype(np.int64)
    return Hits(counts, out_f, out_y, out_x, out_s, out_s > double_threshold)
