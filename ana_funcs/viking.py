"""The Viking spectrum (Andor Newton camera) in the event loop: photoelectrons per column, with and
without a polynomial baseline, and the signal's total, frame by frame.

The camera's frames arrive dark-subtracted (ADU); pixels that are not valid in a frame count as 0.
The rows of the spectrum's band are summed and turned into photoelectrons with the camera's
``preampGain`` and ``HighCapacity`` settings (:func:`smalldata.spectro.viking.photoelectrons_per_count`).
The baseline is the least-squares polynomial, in the column coordinate, through the columns outside
the signal range, as :func:`smalldata.spectro.viking.remove_baseline`; here its fit is precomputed
once per run (:class:`BaselineFit`) so that each spectrum's baseline is a row-wise product whose bits
do not depend on the other frames of the batch (a least-squares solve of a stack of spectra does).
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np

from smalldata.errors import CalibrationError, ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames
from smalldata.spectro.calibration import EnergyCalibration, check_monotonic
from smalldata.spectro.viking import photoelectrons_per_count, spectrum

from .camera_frames import camera_frame_data, camera_plane

log = logging.getLogger(__name__)

#: config key -> the Newton's CONTROL setting it stands for
SETTINGS = {"preamp_gain": "preampGain", "high_capacity": "HighCapacity"}


class BaselineFit:
    """Polynomial baseline of spectra, fitted to the points outside a signal range.

    Parameters
    ----------
    x : (M,) array
        Axis of the spectra (the column coordinate).
    outside : (M,) bool
        Points the baseline is fitted to.
    degree : int
    """

    def __init__(self, x: np.ndarray, outside: np.ndarray, degree: int):
        x = np.asarray(x, dtype=np.float64)
        self.outside = np.asarray(outside, bool)
        scale = max(float(np.abs(x[self.outside]).max()), 1.0)  # the scaling of remove_baseline
        #: (M, degree + 1) powers of the scaled axis
        self.basis = np.vander(x / scale, int(degree) + 1, increasing=True)
        #: (degree + 1, points outside) least-squares solution operator
        self.solve = np.linalg.pinv(self.basis[self.outside])

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        """(N, M) baseline of spectra (N, M); each row from that spectrum alone, bit for bit."""
        points = np.ascontiguousarray(np.asarray(spectra, dtype=np.float64)[:, self.outside])
        base = np.zeros(np.shape(spectra), dtype=np.float64)
        for k, row in enumerate(self.solve):
            base += (points * row).sum(axis=1)[:, None] * self.basis[:, k]
        return base


class VikingSpectrum(DetObjectFunc):
    """Viking spectrum per frame in photoelectrons, its baseline removed, and its total.

    Parameters
    ----------
    name : str
        Output prefix.
    signal_range : (low, high)
        Where the signal lies on the spectrum's axis: in eV when ``calibration`` is given, in
        columns (pixels, 0-based) otherwise, like the ToolBox's ``BL_SIGNAL_RANGE``. The baseline is
        fitted to the columns outside; ``total`` sums the baseline-free spectrum inside.
    baseline_degree : int
        Degree of the baseline polynomial (0 = a constant).
    calibration : sequence of float, optional
        Column-to-energy polynomial, lowest power first (eV, eV/pixel, eV/pixel**2, ...) as
        :class:`smalldata.spectro.calibration.EnergyCalibration` and ``calibrate_from_mono``; the
        ToolBox's ``ENERGY_CALIB`` lists the same coefficients highest power first.
    preamp_gain : int, optional
        The Newton's ``preampGain`` setting (0, 1, 2 = gain 1, 2, 4); default the run's recorded setting.
    high_capacity : int, optional
        The Newton's ``HighCapacity`` setting (0 = high sensitivity, 1 = high capacity); default the
        run's recorded setting.
    rows : (y0, y1), optional
        Rows summed (the spectrum's band, end exclusive); default all.
    """

    def __init__(self, name: str = "viking", signal_range: Optional[Sequence[float]] = None, baseline_degree: int = 1,
                 calibration: Optional[Sequence[float]] = None, preamp_gain: Optional[int] = None,
                 high_capacity: Optional[int] = None, rows: Optional[Sequence[int]] = None):
        super().__init__(name)
        if signal_range is None or len(signal_range) != 2 or not float(signal_range[0]) < float(signal_range[1]):
            raise ConfigError("signal_range", f"{signal_range!r} is not [low, high] with low < high: give where the "
                                              "signal lies (eV with a calibration, columns without)")
        if int(baseline_degree) < 0:
            raise ConfigError("baseline_degree", f"{baseline_degree} is not a polynomial degree (0, 1, 2, ...)")
        if calibration is not None and len(calibration) < 2:
            raise ConfigError("calibration", f"{list(calibration)} is not a polynomial of degree >= 1; give "
                                             "[c0, c1, c2] (eV, lowest power first)")
        if rows is not None and (len(rows) != 2 or not 0 <= int(rows[0]) < int(rows[1])):
            raise ConfigError("rows", f"{list(rows)} is not [y0, y1] with 0 <= y0 < y1")
        for key, value in (("preamp_gain", preamp_gain), ("high_capacity", high_capacity)):
            if value is not None:
                try:
                    photoelectrons_per_count(value if key == "preamp_gain" else 0,
                                             value if key == "high_capacity" else 0)
                except CalibrationError as exc:
                    raise ConfigError(key, str(exc)) from None
        self.signal_range = [float(v) for v in signal_range]
        self.baseline_degree = int(baseline_degree)
        self.calibration = None if calibration is None else [float(v) for v in calibration]
        self.preamp_gain = preamp_gain
        self.high_capacity = high_capacity
        self.rows = None if rows is None else [int(v) for v in rows]
        self.pe_per_count: Optional[float] = None
        self._shape: Optional[tuple] = None

    def _setting(self, det, key: str) -> int:
        """The configured value of ``key``, else the run's recorded camera setting; one line if neither."""
        configured = getattr(self, key)
        params = det.params() if callable(getattr(det, "params", None)) else {}
        recorded = (params.get("settings") or {}).get(SETTINGS[key])
        if configured is not None:
            if recorded is not None and float(recorded) != float(configured):
                log.warning("%s: %s=%s given in the config, the run recorded %s=%g; using %s", self.config_path,
                            key, configured, SETTINGS[key], float(recorded), configured)
            return int(configured)
        if recorded is None:
            raise ConfigError(f"{self.config_path}.{key}", f"the Newton's {SETTINGS[key]} setting is not among "
                              f"detector {getattr(det, 'name', '?')!r}'s recorded camera settings "
                              f"({sorted(params.get('settings') or {})}); give {key} in the config")
        return int(recorded)

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        mask, shape = camera_plane(det, self.config_path)
        ny, nx = shape
        if getattr(det, "units", "ADU") != "ADU":
            raise ConfigError(self.config_path, f"photoelectrons are counted from ADU but detector "
                                                f"{getattr(det, 'name', '?')!r} gives {det.units}; remove its gain")
        if self.rows is not None and self.rows[1] > ny:
            raise ConfigError(f"{self.config_path}.rows", f"{self.rows} goes beyond the camera's {ny} rows")
        try:
            self.pe_per_count = photoelectrons_per_count(self._setting(det, "preamp_gain"),
                                                         self._setting(det, "high_capacity"))
        except CalibrationError as exc:
            raise ConfigError(f"{self.config_path}.preamp_gain", str(exc)) from None
        pixels = np.arange(nx, dtype=np.float64)
        axis = pixels
        if self.calibration is not None:
            try:
                check_monotonic(self.calibration, (0.0, nx - 1.0), what="calibration")
            except CalibrationError as exc:
                raise ConfigError(f"{self.config_path}.calibration", str(exc)) from None
            axis = EnergyCalibration(tuple(self.calibration), (0.0, nx - 1.0))(pixels)
        low, high = self.signal_range
        inside = (axis >= low) & (axis <= high)
        unit = "eV" if self.calibration is not None else "pixel"
        if not inside.any():
            raise ConfigError(f"{self.config_path}.signal_range", f"{self.signal_range} {unit} holds no column (the "
                              f"camera spans {axis.min():g}..{axis.max():g} {unit}); give the signal's range in {unit}")
        if (~inside).sum() <= self.baseline_degree + 1:
            raise ConfigError(f"{self.config_path}.signal_range", f"only {int((~inside).sum())} columns lie outside "
                              f"{self.signal_range} {unit}; a baseline of degree {self.baseline_degree} needs more: "
                              "narrow the signal range or lower baseline_degree")
        self._shape, self._inside, self._axis = shape, inside, axis
        self._zero_dark = np.zeros(shape, np.float32)  # frames arrive dark-subtracted
        self._baseline = BaselineFit(pixels, ~inside, self.baseline_degree)

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        """``spectrum``, ``spectrum_nobl`` (N, nx) and ``total`` (N,), photoelectrons."""
        if self._shape is None:
            raise RuntimeError(f"{self.name}: setFromDet(det) has not been called")
        data = camera_frame_data(frames, self._shape, f"function {self.config_path}")
        spec = spectrum(data, self._zero_dark, self.pe_per_count, None if self.rows is None else tuple(self.rows))
        nobl = spec - self._baseline(spec)
        return {"spectrum": spec, "spectrum_nobl": nobl,
                "total": np.ascontiguousarray(nobl[:, self._inside]).sum(axis=1)}

    def config_arrays(self) -> Dict[str, np.ndarray]:
        """Column of each spectrum point, and its energy (eV) with a calibration."""
        if self._shape is None:
            return {}
        out = {"pixel": np.arange(self._shape[1], dtype=np.float64)}
        if self.calibration is not None:
            out["energy"] = self._axis.copy()
        return out

    def config_units(self) -> Dict[str, str]:
        return {"pixel": "pixel", "energy": "eV"}

    def output_units(self) -> Dict[str, str]:
        return {"spectrum": "photoelectron", "spectrum_nobl": "photoelectron", "total": "photoelectron"}
