"""Droplet and photon parameters: their checks, photon size, and thresholds per module plane.

Shared by :class:`~smalldata.funcs.droplet.Droplet` and :class:`~smalldata.funcs.photons.Photons`.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import numpy as np

from smalldata.errors import ConfigError
from smalldata.plugin.frames import Frames

log = logging.getLogger(__name__)

THRESHOLD_UNITS = ("noise", "photon", "data")


def check_droplet_params(threshold: float, threshold_low: float, threshold_unit: str, min_sum: float) -> None:
    """Validate the droplet-finding parameters (raises :class:`ConfigError`)."""
    if threshold_unit not in THRESHOLD_UNITS:
        raise ConfigError("threshold_unit", f"{threshold_unit!r} is not a threshold unit; use 'noise' "
                                            "(multiples of each pixel's noise), 'photon' (multiples of "
                                            "adu_per_photon) or 'data' (data units: ADU, or photons)")
    for key, value in (("threshold", threshold), ("threshold_low", threshold_low), ("min_sum", min_sum)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
    if threshold_low <= 0:
        raise ConfigError("threshold_low", f"must be > 0 (a pixel joins a droplet above it), got {threshold_low}")
    if threshold_low > threshold:
        raise ConfigError("threshold_low", f"the grow threshold ({threshold_low}) is above the seed threshold "
                                           f"({threshold}); need threshold_low <= threshold")
    if min_sum < 0:
        raise ConfigError("min_sum", f"must be >= 0, got {min_sum}")


def check_photon_params(adu_per_photon: Optional[float], rounding_offset: float) -> None:
    """Validate the photon conversion parameters (raises :class:`ConfigError`)."""
    if adu_per_photon is not None and (isinstance(adu_per_photon, bool)
                                       or not isinstance(adu_per_photon, (int, float, np.integer, np.floating))
                                       or not np.isfinite(adu_per_photon) or adu_per_photon <= 0):
        raise ConfigError("adu_per_photon", f"must be a positive number (data units per photon) or null "
                                            f"for the detector's gain, got {adu_per_photon!r}")
    if isinstance(rounding_offset, bool) or not isinstance(rounding_offset, (int, float, np.integer, np.floating)) \
            or not 0 <= rounding_offset < 1:
        raise ConfigError("rounding_offset", f"must be in [0, 1) (0.5 rounds to the nearest photon), "
                                             f"got {rounding_offset!r}")


def check_count(key: str, value: int, minimum: int = 1) -> int:
    """Validate an integer parameter ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def resolve_adu_per_photon(adu_per_photon: Optional[float], det) -> Optional[float]:
    """Data units per photon: the parameter, else 1 for photon data, else the detector gain, else None."""
    if adu_per_photon is not None:
        return float(adu_per_photon)
    if getattr(det, "units", "ADU") == "photon":
        return 1.0
    gain = getattr(det, "gain", None)
    if gain is None:
        return None
    gain = np.asarray(gain, dtype=np.float64)
    if gain.ndim:
        good = np.asarray(det.mask, dtype=bool) & np.isfinite(gain) & (gain > 0)
        if not good.any():
            raise ConfigError("adu_per_photon", "the detector gain has no positive value on good pixels; "
                                                "set adu_per_photon")
        value = float(np.median(gain[good]))
        log.info("using the median detector gain %.4g ADU/photon for photon conversion", value)
        return value
    if not np.isfinite(gain) or gain <= 0:
        raise ConfigError("adu_per_photon", f"the detector gain {float(gain)} is not positive; set adu_per_photon")
    return float(gain)


def photons_per_droplet(adu: np.ndarray, adu_per_photon: float, rounding_offset: float) -> np.ndarray:
    """Integer photons of each droplet: ``floor(adu / adu_per_photon + rounding_offset)``, at least 0."""
    return photon_values(adu, adu_per_photon, rounding_offset).astype(np.int64)


def photon_values(adu: np.ndarray, adu_per_photon: float, rounding_offset: float) -> np.ndarray:
    """:func:`photons_per_droplet` as float64 (whole numbers, exact), e.g. for ``numpy.bincount`` weights."""
    n = np.divide(adu, adu_per_photon, dtype=np.float64)  # one temporary, the rest in place
    n += rounding_offset
    np.floor(n, out=n)
    np.maximum(n, 0, out=n)
    return n


class DropletThresholds:
    """Seed and grow thresholds per module plane, from parameters and the detector noise."""

    def __init__(self, threshold: float, threshold_low: float, threshold_unit: str, owner: str):
        self.threshold = float(threshold)
        self.threshold_low = float(threshold_low)
        self.unit = threshold_unit
        self.owner = owner
        self.noise = None
        self.modules = None
        self._cache: Dict[tuple, tuple] = {}
        self._warned = False

    def set_detector(self, det, adu_per_photon: Optional[float] = None) -> None:
        """Take the noise map (``threshold_unit='noise'``), the photon size (``'photon'``) and modules."""
        self._cache = {}
        self.modules = tuple(det.modules)
        self.adu_per_photon = adu_per_photon
        if self.unit == "photon" and adu_per_photon is None:
            raise ConfigError("threshold_unit", f"{self.owner}: thresholds in photons need adu_per_photon "
                                                "(the data are in ADU and the detector has no gain)")
        if self.unit == "noise":
            noise = np.asarray(det.noise_in_units, dtype=np.float32)
            good = np.asarray(det.mask, dtype=bool) & np.isfinite(noise)
            self.noise = noise
            self.typical_noise = float(np.median(noise[good])) if good.any() else float("nan")

    def for_frames(self, frames: Frames):
        """(seed, grow) thresholds broadcastable to the frames' (P, H, W) planes."""
        if self.unit == "data":
            return self.threshold, self.threshold_low
        if self.unit == "photon":
            if self.adu_per_photon is None:
                raise RuntimeError(f"{self.owner}: threshold_unit 'photon' needs setFromDet(det) before process()")
            return self.threshold * self.adu_per_photon, self.threshold_low * self.adu_per_photon
        if self.noise is None:
            raise RuntimeError(f"{self.owner}: threshold_unit 'noise' needs setFromDet(det) before process()")
        full = frames.modules is not None and frames.data.shape[1:] == (len(frames.modules),) + self.noise.shape[1:]
        if not full:
            if not self._warned:
                log.warning("%s: frames are a crop; noise thresholds use the median noise %.4g %s",
                            self.owner, self.typical_noise, frames.units)
                self._warned = True
            return self.threshold * self.typical_noise, self.threshold_low * self.typical_noise
        key = tuple(frames.modules)
        if key not in self._cache:
            idx = [self.modules.index(m) for m in key]
            noise = self.noise[idx]
            self._cache[key] = (np.float32(self.threshold) * noise, np.float32(self.threshold_low) * noise)
        return self._cache[key]
