"""Bad-pixel classification of a dark run (its thresholds: :mod:`smalldata.config.dark`).

A pixel's pedestal and noise are compared with the typical values of its module in
the same memory cell (median and a MAD-based robust spread over the module's 65536
pixels) and with absolute limits. A pixel is bad if it is bad in any cell; the
reasons are kept as bits (:mod:`smalldata.calib.masks`).
"""
from __future__ import annotations

import numpy as np

from smalldata.calib.masks import BAD_DEAD, BAD_HOT, BAD_NOISY, BAD_PEDESTAL_RANGE
from smalldata.config.dark import DarkThresholds

#: Factor from the median absolute deviation to the standard deviation of a Gaussian.
MAD_TO_SIGMA = 1.4826
#: Lower bound of the robust spread (ADU), so that a module of identical pixels flags nothing.
MIN_SPREAD_ADU = 0.05


def robust_center_spread(values: np.ndarray) -> tuple:
    """Median and MAD-based spread over the last axis of ``values`` ((C, P) -> two (C,) arrays)."""
    center = np.median(values, axis=-1)
    mad = np.median(np.abs(values - center[..., None]), axis=-1)
    return center, np.maximum(MAD_TO_SIGMA * mad, MIN_SPREAD_ADU)


def classify_bad_pixels(pedestal: np.ndarray, noise: np.ndarray, thresholds: DarkThresholds) -> np.ndarray:
    """Bad-pixel reason bits of one module.

    Parameters
    ----------
    pedestal, noise : ndarray, (C, rows, columns)
        Per-cell pedestal and noise of the module's pixels, ADU.
    thresholds : DarkThresholds

    Returns
    -------
    ndarray, (rows, columns) uint8
        Bits: 1 dead, 2 hot, 4 noisy, 8 pedestal out of range; 0 = good in every cell.
    """
    n_cells = pedestal.shape[0]
    ped = pedestal.reshape(n_cells, -1).astype(np.float64)
    sig = noise.reshape(n_cells, -1).astype(np.float64)
    ped_mid, ped_spread = robust_center_spread(ped)
    sig_mid, sig_spread = robust_center_spread(sig)

    dead = (sig < thresholds.dead_noise_max).any(axis=0)
    above_max = (ped > thresholds.pedestal_max).any(axis=0)
    hot = ((ped - ped_mid[:, None]) > thresholds.hot_pedestal_nsigma * ped_spread[:, None]).any(axis=0)
    noisy = ((sig - sig_mid[:, None]) > thresholds.noisy_noise_nsigma * sig_spread[:, None]).any(axis=0)
    out_of_range = (above_max | (ped < thresholds.pedestal_min).any(axis=0))

    status = np.zeros(ped.shape[1], dtype=np.uint8)
    status[dead] |= BAD_DEAD
    status[hot | above_max] |= BAD_HOT
    status[noisy] |= BAD_NOISY
    status[out_of_range] |= BAD_PEDESTAL_RANGE
    return status.reshape(pedestal.shape[1:])
