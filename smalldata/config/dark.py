"""The dark characterisation's settings: the ``detectors.<name>.dark`` config keys.

:data:`DARK_SCHEMA` declares the keys (the config reference is generated from it) and
:class:`DarkThresholds` holds their checked values for :mod:`smalldata.calib.badpixels`
and the dark constants file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional

from smalldata.config.schema import Field, apply_schema, non_negative, positive
from smalldata.detectors.dssc import DSSC
from smalldata.errors import ConfigError


def _at_least_two(value) -> Optional[str]:
    return None if value >= 2 else f"must be >= 2 (a standard deviation needs two frames), got {value}"


def _adc_range(value) -> Optional[str]:
    return None if 0 <= value <= DSSC.saturation else f"must be within the DSSC's ADC range 0..{DSSC.saturation}, " \
                                                      f"got {value}"


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
