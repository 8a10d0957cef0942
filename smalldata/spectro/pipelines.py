"""Per-batch analyses of the spectrometers, ready to be wired into the event loop: raw camera frames
``(N, ny, nx)`` in, per-frame arrays out.

:class:`HRIXSSpectra`: dark subtraction, then the spectrum by centroiding or by integration on fixed
energy bins, with the hit counts (:class:`HRIXSBinning`, the part after the dark subtraction, is shared
with the event-loop function ``hrixs``). :class:`VikingSpectra`: the spectrum in photoelectrons, with and
without its baseline. Constructor parameters are the settings a config would give (SI units, eV).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.cameras.dark import CameraDark, check_dark
from smalldata.errors import ConfigError

from .calibration import EnergyCalibration
from .centroid import centroid, resolve_threshold
from .curvature import Curvature
from .spectra import OverlapBinning, spectrum_from_hits
from .viking import photoelectrons_per_count, remove_baseline, spectrum


def energy_edges(energy_bins: Sequence[float]) -> np.ndarray:
    """Energy bin edges ``first, first + width, ... <= last`` (eV) of ``(first, last, width)``.

    Raises a one-line :class:`ConfigError` (key ``energy_bins``) unless ``last - first >= width > 0``.
    """
    values = tuple(float(v) for v in energy_bins)
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ConfigError("energy_bins", f"{list(energy_bins)} is not (first, last, width) in eV")
    first, last, width = values
    if not (width > 0 and last - first >= width):
        raise ConfigError("energy_bins", f"{list(values)} is not (first, last, width) with width > 0 and at least "
                                         "one bin (last - first >= width)")
    return first + width * np.arange(int(np.floor((last - first) / width + 1e-9)) + 1)


class HRIXSBinning:
    """hRIXS spectrum per frame of dark-subtracted frames: what :class:`HRIXSSpectra` does after the
    dark subtraction, shared with the event-loop function ``hrixs`` (smalldata.funcs.hrixs).

    Parameters
    ----------
    shape : (ny, nx)
        Image shape (rows dispersive).
    mask : (ny, nx) bool
        True = good pixel.
    curvature : (c1, c2)
        Line curvature (rows per column, per column squared).
    energy_slope, energy_intercept : float
        eV per corrected row, eV at row 0.
    energy_bins : (first, last, width)
        See :func:`energy_edges` (eV).
    method : str
        ``"centroid"`` (photons per bin) or ``"integrate"`` (pixel-overlap sums, data units).
    threshold : float, optional
        2x2-sum hit threshold (ADU, :func:`~smalldata.spectro.centroid.resolve_threshold`); centroiding only.
    double_threshold_adu : float
        4x4 sum above which a hit is double (inf: none).
    """

    def __init__(self, shape: Tuple[int, int], mask: np.ndarray, curvature: Tuple[float, float], energy_slope: float,
                 energy_intercept: float, energy_bins: Sequence[float], method: str = "centroid",
                 threshold: Optional[float] = None, double_threshold_adu: float = np.inf):
        if method not in ("centroid", "integrate"):
            raise ConfigError("method", f"{method!r} is not a method; use 'centroid' or 'integrate'")
        if method == "centroid" and threshold is None:
            raise ConfigError("threshold", "centroiding needs a hit threshold (threshold_adu or threshold_sigma)")
        self.shape = tuple(int(v) for v in shape)
        self.mask = np.asarray(mask, bool)
        self.method = method
        self.curvature = Curvature(*curvature)
        self.calibration = EnergyCalibration.linear(energy_slope, energy_intercept, (-0.5, self.shape[0] - 0.5))
        self.edges = energy_edges(energy_bins)
        self.threshold = None if threshold is None else float(threshold)
        self.double_threshold = float(double_threshold_adu)
        self.binning = (OverlapBinning(self.shape, self.curvature, self.calibration, self.edges, self.mask)
                        if method == "integrate" else None)

    @property
    def energy(self) -> np.ndarray:
        """(B,) bin centres (eV)."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def __call__(self, data: np.ndarray) -> Dict[str, np.ndarray]:
        """Per-frame outputs of dark-subtracted frames ``(N, ny, nx)`` float32 whose bad pixels are 0:
        ``spectrum`` (N, B) and, when centroiding, ``hits``, ``double_hits``, ``photons`` (N,)."""
        if self.method == "integrate":
            return {"spectrum": self.binning(data)}
        hits = centroid(data, self.threshold, self.double_threshold)
        # float64 also when no hit lands in a bin (bincount of nothing gives integers)
        spec = spectrum_from_hits(hits, self.curvature, self.calibration, self.edges).astype(np.float64, copy=False)
        return {"spectrum": spec,
                "hits": hits.counts, "photons": hits.photons_per_frame(),
                "double_hits": np.bincount(hits.frame[hits.double], minlength=len(data)).astype(np.int64)}


class HRIXSSpectra:
    """hRIXS spectrum per frame of raw frames: dark subtraction, then :class:`HRIXSBinning`.

    Parameters
    ----------
    dark : CameraDark
        Dark of the camera (mean, noise, mask).
    curvature : (c1, c2)
        Line curvature (rows per column, per column squared).
    energy_slope, energy_intercept : float
        eV per corrected row, eV at row 0.
    energy_bins : (first, last, width)
        Bin edges ``first, first + width, ... <= last`` (eV).
    method : str
        ``"centroid"`` (photons per bin) or ``"integrate"`` (pixel-overlap sums, ADU).
    threshold_adu, threshold_sigma : float, optional
        Hit threshold on the 2x2 sum, exactly one of them (centroiding only).
    double_threshold_adu : float
        4x4 sum above which a hit is double (inf: none).
    """

    def __init__(self, dark: CameraDark, curvature: Tuple[float, float], energy_slope: float, energy_intercept: float,
                 energy_bins: Tuple[float, float, float], method: str = "centroid",
                 threshold_adu: Optional[float] = None, threshold_sigma: Optional[float] = None,
                 double_threshold_adu: float = np.inf):
        if method not in ("centroid", "integrate"):
            raise ConfigError("method", f"{method!r} is not a method; use 'centroid' or 'integrate'")
        self.dark, self.method = dark, method
        threshold = (resolve_threshold(threshold_adu, threshold_sigma, dark.noise, dark.mask)
                     if method == "centroid" else None)
        self.core = HRIXSBinning(dark.shape, dark.mask, curvature, energy_slope, energy_intercept, energy_bins,
                                 method, threshold, double_threshold_adu)
        self.curvature, self.calibration, self.edges = self.core.curvature, self.core.calibration, self.core.edges
        self.threshold, self.binning = self.core.threshold, self.core.binning

    @property
    def energy(self) -> np.ndarray:
        """(B,) bin centres (eV)."""
        return self.core.energy

    def process(self, raw: np.ndarray) -> Dict[str, np.ndarray]:
        """Per-frame outputs of raw frames ``(N, ny, nx)``: ``spectrum`` (N, B) and, when centroiding,
        ``hits``, ``double_hits``, ``photons`` (N,)."""
        check_dark(self.dark, raw.shape[1:], what="hRIXS frames")
        data = np.where(self.dark.mask, raw.astype(np.float32) - self.dark.mean, np.float32(0))
        return self.core(data)


class VikingSpectra:
    """Viking spectrum per frame in photoelectrons, with its baseline removed.

    Parameters
    ----------
    dark : CameraDark
        Dark of the camera, recorded in the same mode (its settings are checked).
    preamp_gain, high_capacity : int
        The camera's ``preampGain`` and ``HighCapacity`` settings of the run.
    signal_range : (first, last)
        Columns holding the signal; the baseline is fitted outside.
    baseline_degree : int
    rows : (first, stop), optional
        Rows summed.
    calibration : sequence of float, optional
        Pixel-to-energy coefficients (ascending powers), e.g. from ``calibrate_from_mono``.
    """

    def __init__(self, dark: CameraDark, preamp_gain: int, high_capacity: int, signal_range: Tuple[float, float],
                 baseline_degree: int = 3, rows: Optional[Tuple[int, int]] = None,
                 calibration: Optional[Tuple[float, ...]] = None):
        check_dark(dark, dark.shape, {"preampGain": preamp_gain, "HighCapacity": high_capacity}, what="Viking dark")
        self.dark = dark
        self.pe_per_count = photoelectrons_per_count(preamp_gain, high_capacity)
        self.signal_range, self.baseline_degree, self.rows = tuple(signal_range), int(baseline_degree), rows
        nx = dark.shape[1]
        self.calibration = EnergyCalibration(tuple(calibration), (0.0, nx - 1.0)) if calibration is not None else None

    @property
    def energy(self) -> Optional[np.ndarray]:
        """(nx,) energy of each column (eV), or None without a calibration."""
        return None if self.calibration is None else self.calibration(np.arange(self.dark.shape[1]))

    def process(self, raw: np.ndarray) -> Dict[str, np.ndarray]:
        """``spectrum`` and ``spectrum_nobl`` (N, nx) photoelectrons of raw frames ``(N, ny, nx)``."""
        check_dark(self.dark, raw.shape[1:], what="Viking frames")
        spec = spectrum(raw, self.dark.mean, self.pe_per_count, self.rows, self.dark.mask)
        nobl, _ = remove_baseline(np.arange(spec.shape[1]), spec, self.signal_range, self.baseline_degree)
        return {"spectrum": spec, "spectrum_nobl": nobl}
