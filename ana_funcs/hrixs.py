"""The hRIXS spectrum of a per-train camera in the event loop: centroided photons or integrated
signal per energy bin, frame by frame.

The camera's frames arrive dark-subtracted (ADU); pixels that are not valid in a frame (bad in the
dark, saturated) count as 0. The work after that is :class:`smalldata.spectro.pipelines.HRIXSBinning`,
the same code as the offline :class:`~smalldata.spectro.pipelines.HRIXSSpectra`: photon hits by
centroiding (or the pixel-overlap integration), the curvature correction of their rows, and the
linear energy calibration ``energy = energy_intercept + energy_slope * corrected row``.
"""
from __future__ import annotations

from typing import Annotated, Dict, Literal, Optional, Sequence

import numpy as np

from smalldata.errors import CalibrationError, ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames
from smalldata.plugin.params import AllowNonFinite
from smalldata.spectro.calibration import check_monotonic
from smalldata.spectro.centroid import resolve_threshold
from smalldata.spectro.pipelines import HRIXSBinning, energy_edges

from .camera_frames import camera_frame_data, camera_plane


class HRIXSSpectrum(DetObjectFunc):
    """hRIXS spectrum per frame on fixed energy bins.

    Parameters
    ----------
    name : str
        Output prefix.
    method : {"centroid", "integrate"}
        Photon hits per bin (centroiding), or each pixel's signal shared among the bins its energy
        interval overlaps (integration; data units).
    curvature : (c1, c2)
        Line curvature: a line of one energy lies on ``row = row0 + c1 * column + c2 * column**2``.
    energy_slope : float
        eV per curvature-corrected row (non-zero).
    energy_intercept : float
        eV at corrected row 0.
    energy_bins : (first, last, width)
        Bin edges ``first, first + width, ... <= last`` (eV).
    threshold_adu : float, optional
        Hit threshold on the 2x2 sum (ADU); centroiding takes exactly one of the two thresholds.
    threshold_sigma : float, optional
        Hit threshold in multiples of the noise of a 2x2 sum (twice the median dark noise of the
        good pixels).
    double_threshold_adu : float
        4x4 sum (ADU) above which a hit holds two photons; inf: no double hits.
    """

    def __init__(self, name: str = "hrixs", method: Literal["centroid", "integrate"] = "centroid",
                 curvature: Sequence[float] = (0.0, 0.0), energy_slope: Optional[float] = None,
                 energy_intercept: Optional[float] = None, energy_bins: Optional[Sequence[float]] = None,
                 threshold_adu: Optional[float] = None, threshold_sigma: Optional[float] = None,
                 double_threshold_adu: Annotated[float, AllowNonFinite] = float("inf")):
        super().__init__(name)
        if method not in ("centroid", "integrate"):
            raise ConfigError("method", f"{method!r} is not a method; use 'centroid' or 'integrate'")
        if len(curvature) != 2:
            raise ConfigError("curvature", f"{list(curvature)} is not [c1, c2] (rows per column, per column squared)")
        for key, value in (("energy_slope", energy_slope), ("energy_intercept", energy_intercept),
                           ("energy_bins", energy_bins)):
            if value is None:
                raise ConfigError(key, "missing: the hRIXS spectrum needs energy_slope (eV per corrected row), "
                                       "energy_intercept (eV) and energy_bins [first, last, width] (eV)")
        self.edges = energy_edges(energy_bins)
        if method == "centroid":
            if (threshold_adu is None) == (threshold_sigma is None):
                raise ConfigError("threshold_adu", "give the hit threshold either in ADU (threshold_adu) or in noise "
                                                   "sigmas (threshold_sigma), not both or neither")
            if threshold_adu is not None:
                resolve_threshold(threshold_adu, None)  # refuses a threshold that is not a positive number
            if threshold_sigma is not None and not threshold_sigma > 0:
                raise ConfigError("threshold_sigma", f"{threshold_sigma} is not a positive number of sigmas")
            if np.isnan(double_threshold_adu) or double_threshold_adu <= 0:
                raise ConfigError("double_threshold_adu", f"{double_threshold_adu} is not a positive number of ADU "
                                                          "(or .inf for no double hits)")
        elif threshold_adu is not None or threshold_sigma is not None:
            key = "threshold_adu" if threshold_adu is not None else "threshold_sigma"
            raise ConfigError(key, "hit thresholds apply to method 'centroid' only; remove it for 'integrate'")
        self.method = method
        self.curvature = tuple(float(v) for v in curvature)
        self.energy_slope = float(energy_slope)
        self.energy_intercept = float(energy_intercept)
        self.energy_bins = [float(v) for v in energy_bins]
        self.threshold_adu = threshold_adu
        self.threshold_sigma = threshold_sigma
        self.double_threshold_adu = float(double_threshold_adu)
        self._core: Optional[HRIXSBinning] = None

    def needs_noise(self) -> bool:
        """A threshold in noise sigmas takes the camera's dark noise."""
        return self.method == "centroid" and self.threshold_sigma is not None

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        mask, shape = camera_plane(det, self.config_path)
        try:
            check_monotonic((self.energy_intercept, self.energy_slope), (-0.5, shape[0] - 0.5),
                            what=f"energy_slope {self.energy_slope:g}, energy_intercept {self.energy_intercept:g}")
        except CalibrationError as exc:
            raise ConfigError(f"{self.config_path}.energy_slope", str(exc)) from None
        threshold = None
        if self.method == "centroid":
            if getattr(det, "units", "ADU") != "ADU":
                raise ConfigError(self.config_path, f"centroiding thresholds are in ADU but detector "
                                                    f"{getattr(det, 'name', '?')!r} gives {det.units}; remove its "
                                                    "gain, or use method 'integrate'")
            noise = None
            if self.threshold_sigma is not None:
                noise = np.asarray(det.noise, dtype=np.float32).reshape(shape)
            threshold = resolve_threshold(self.threshold_adu, self.threshold_sigma, noise, mask)
        self._core = HRIXSBinning(shape, mask, self.curvature, self.energy_slope, self.energy_intercept,
                                  self.energy_bins, self.method, threshold, self.double_threshold_adu)

    @property
    def threshold(self) -> Optional[float]:
        """The 2x2-sum hit threshold in ADU once set up (None when integrating)."""
        return None if self._core is None else self._core.threshold

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        """``spectrum`` (N, B) and, centroiding, ``n_single``, ``n_double``, ``n_photons`` (N,);
        integrating, ``total`` (N,), the spectrum's sum."""
        if self._core is None:
            raise RuntimeError(f"{self.name}: setFromDet(det) has not been called")
        out = self._core(camera_frame_data(frames, self._core.shape, f"function {self.config_path}"))
        if self.method == "integrate":
            # C order: a row's sum then runs over that frame's bins alone, whatever the batch
            spectrum = np.ascontiguousarray(out["spectrum"])
            return {"spectrum": spectrum, "total": spectrum.sum(axis=1)}
        return {"spectrum": out["spectrum"], "n_single": out["hits"] - out["double_hits"],
                "n_double": out["double_hits"], "n_photons": out["photons"]}

    def config_arrays(self) -> Dict[str, np.ndarray]:
        """Energy bin centres and edges (eV)."""
        return {"energy": 0.5 * (self.edges[1:] + self.edges[:-1]), "energy_edges": self.edges.copy()}

    def config_units(self) -> Dict[str, str]:
        return {"energy": "eV", "energy_edges": "eV"}

    def output_units(self) -> Dict[str, str]:
        if self.method == "integrate":
            units = self.det.units if self.det is not None else "ADU"
            return {"spectrum": units, "total": units}
        return {"spectrum": "photon", "n_photons": "photon", "n_single": "", "n_double": ""}
