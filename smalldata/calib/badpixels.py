"""Bad-pixel classification of a dark run, and its thresholds.

A pixel's pedestal and noise are compared with the typical values of its module in
the same memory cell (median and a MAD-based robust spread over the module's 65536
pixels) and with absolute limits. A pixel is bad if it is bad in any cell; the
reasons are kept as bits (:mod:`smalldata.calib.masks`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional

import numpy as np

from smalldata.calib.masks import BAD_DEAD, BAD_HOT, BAD_NOISY, BAD_PEDESTAL_RANGE
from smalldata.config.schema import Field, apply_schema, non_negative, positive
from smalldata.constants import DSSC_ADC_MAX
from smalldata.errors import ConfigError

#: Factor from the median absolute deviation to the standard deviation of a Gaussian.
MAD_TO_SIGMA = 1.4826
#: Lower bound of the robust spread (ADU), so that a module of identical pixels flags nothing.
MIN_SPREAD_ADU = 0.05


def _at_least_two(value) -> Optional[str]:
    return None if value >= 2 else f"must be >= 2 (a standard deviation needs two frames), got {value}"


def _adc_range(value) -> Optional[str]:
    return None if 0 <= value <= DSSC_ADC_MAX else f"must be within the ADC range 0..{DSSC_ADC_MAX}, got {value}"


#: The ``detectors.<name>.dark`` config keys (also the attributes of :class:`DarkThresholds`).
DARK_SCHEMA: Dict[str, Field] = {
    "min_frames": Field(int, 100, "fewest dark frames per memory cell; fewer is an error", "frames",
                        _at_least_two),
    "dead_noise_max": Field(float, 0.2, "dead (bit 1): noise below this in any cell (a stuck pixel "
                                        "measures 0; a live one about 1 ADU or more)", "ADU", non_negative),
    "hot_pedestal_nsigma": Field(float, 6.0, "hot (bit 2): pedestal above the module's median by more than "
                                             "this many robust spreads", "", positive),
    "noisy_noise_nsigma": Field(float, 5.0, "noisy (bit 4): noise above the module's median by more than "
                                            "this many robust spreads", "", positive),
    "pedestal_min": Field(float, 1.0, "pedestal below this is out of range (bit 8)", "ADU", _adc_range),
    "pedestal_max": Field(float, 400.0, "pedestal above this is out of range (bit 8) and hot (bit 2)", "ADU",
                          _adc_range),
}


@dataclass(frozen=True)
class DarkThresholds:
    """Settings of the dark characterisation (see :data:`DARK_SCHEMA` for their meaning)."""

    min_frames: int = DARK_SCHEMA["min_frames"].default
    dead_noise_max: float = DARK_SCHEMA["dead_noise_max"].default
    hot_pedestal_nsigma: float = DARK_SCHEMA["hot_pedestal_nsigma"].default
    noisy_noise_nsigma: float = DARK_SCHEMA["noisy_noise_nsigma"].default
    pedestal_min: float = DARK_SCHEMA["pedestal_min"].default
    pedestal_max: float = DARK_SCHEMA["pedestal_max"].default

    def __post_init__(self):
        checked = apply_schema(asdict(self), DARK_SCHEMA, "dark")
        if checked["pedestal_min"] >= checked["pedestal_max"]:
            raise ConfigError("dark.pedestal_min", f"pedestal_min {self.pedestal_min} must be below "
                                                   f"pedestal_max {self.pedestal_max}")

    @classmethod
    def from_mapping(cls, mapping: Optional[Mapping[str, Any]], path: str = "dark") -> "DarkThresholds":
        """Thresholds from a config mapping (missing keys take their defaults)."""
        values = apply_schema(mapping, DARK_SCHEMA, path)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(exc.path.replace("dark", path, 1), exc.message) from None

    def as_dict(self) -> Dict[str, Any]:
        """The thresholds as a plain dict (file attributes, UserDataCfg)."""
        return asdict(self)


def robust_center_spread(values: np.ndarray) -> tuple:
    """Median and MAD-based spread over the last axis of ``values`` ((C, P) -> two (C,) arrays)."""
    center = np.median(values, axis=-1)
    mad = np.median(np.abs(values - center[..., None]), axis=-1)
    return center, np.maximum(MAD_TO_SIGMA * mad, MIN_SPREAD_ADU)


def classify_bad_pixels(pedestal: np.ndarray, noise: np.ndarray, thresholds: DarkThresholds) -> np.ndarray:
    """Bad-pixel reason bits of one module.

    Parameters
    ----------
    pedestal, noise : ndarray, (C, 128, 512)
        Per-cell pedestal and noise of the module's pixels, ADU.
    thresholds : DarkThresholds

    Returns
    -------
    ndarray, (128, 512) uint8
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
