"""Pixel to energy: a polynomial in the (curvature-corrected) pixel coordinate, monotonic on the camera.

``energy = c[0] + c[1] * p + c[2] * p**2 + ...`` (ascending powers, eV). hRIXS uses a straight
line (slope and intercept), the Viking a second-degree polynomial fitted to monochromator runs.
A calibration that is not strictly monotonic over the pixel range would give two pixels one
energy: it is refused in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from smalldata.errors import CalibrationError


@dataclass(frozen=True)
class EnergyCalibration:
    """Pixel-to-energy polynomial valid on a pixel range.

    Parameters
    ----------
    coefficients : sequence of float
        Ascending powers, eV per pixel**k.
    pixel_range : (first, last)
        Pixel coordinates (inclusive) on which the calibration applies and must be monotonic.
    """

    coefficients: Tuple[float, ...]
    pixel_range: Tuple[float, float]

    def __post_init__(self):
        c = tuple(float(v) for v in self.coefficients)
        object.__setattr__(self, "coefficients", c)
        check_monotonic(c, self.pixel_range)

    @classmethod
    def linear(cls, slope: float, intercept: float, pixel_range: Tuple[float, float]) -> "EnergyCalibration":
        """``energy = intercept + slope * pixel`` (the hRIXS ENERGY_SLOPE, ENERGY_INTERCEPT)."""
        return cls((intercept, slope), pixel_range)

    @classmethod
    def fit(cls, pixels: Sequence[float], energies: Sequence[float], degree: int,
            pixel_range: Tuple[float, float]) -> "EnergyCalibration":
        """Least-squares polynomial through (pixel, energy) points, e.g. line or peak positions."""
        pixels = np.asarray(pixels, dtype=np.float64)
        if len(pixels) < degree + 1:
            raise CalibrationError(f"{len(pixels)} points cannot fix a polynomial of degree {degree}; "
                                   f"give at least {degree + 1} lines or monochromator runs")
        return cls(tuple(np.polynomial.polynomial.polyfit(pixels, np.asarray(energies, dtype=np.float64), degree)),
                   pixel_range)

    def __call__(self, pixel: np.ndarray) -> np.ndarray:
        """Energy (eV) of pixel coordinate(s)."""
        return np.polynomial.polynomial.polyval(np.asarray(pixel, dtype=np.float64), self.coefficients)

    @property
    def increasing(self) -> bool:
        """True if energy grows with the pixel coordinate."""
        lo, hi = self.pixel_range
        return bool(self(hi) > self(lo))

    def pixel(self, energy: np.ndarray) -> np.ndarray:
        """Pixel coordinate(s) of energy values, the inverse on the pixel range (Newton steps)."""
        e = np.asarray(energy, dtype=np.float64)
        lo, hi = self.pixel_range
        d = np.polynomial.polynomial.polyder(self.coefficients)
        p = lo + (e - self(lo)) * (hi - lo) / (self(hi) - self(lo))
        for _ in range(50):
            p = p - (self(p) - e) / np.polynomial.polynomial.polyval(p, d)
        return p


def check_monotonic(coefficients: Sequence[float], pixel_range: Tuple[float, float], what: str = "energy calibration") -> None:
    """Refuse coefficients whose polynomial is not strictly monotonic on the pixel range.

    Parameters
    ----------
    coefficients : sequence of float
        Ascending powers.
    pixel_range : (first, last)
    what : str
        How the calibration is named in the message.
    """
    c = np.asarray(coefficients, dtype=np.float64)
    lo, hi = (float(v) for v in pixel_range)
    if c.ndim != 1 or len(c) < 2 or not np.all(np.isfinite(c)) or not hi > lo:
        raise CalibrationError(f"{what}: coefficients {c.tolist()} on pixels {lo:g}..{hi:g} are not a polynomial of "
                               "degree >= 1 with finite values on a range; give [intercept, slope, ...]")
    d = np.polynomial.polynomial.polyder(c)
    roots = np.polynomial.polynomial.polyroots(d) if len(d) > 1 else np.empty(0)
    turning = sorted(float(r.real) for r in roots if abs(r.imag) < 1e-12 and lo < r.real < hi)
    slopes = np.polynomial.polynomial.polyval(np.linspace(lo, hi, 257), d)
    if turning or np.any(slopes == 0) or (slopes.min() < 0 < slopes.max()):
        where = f" (turns at pixel {turning[0]:.1f})" if turning else ""
        raise CalibrationError(f"{what}: coefficients {c.tolist()} are not monotonic on pixels {lo:g}..{hi:g}{where}; "
                               "two pixels would get one energy: refit, or restrict the pixel range")
