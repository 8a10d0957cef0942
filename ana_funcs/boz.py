"""BOZ ROI sums: the three zone-plate orders of one module, corrected, per frame.

Per frame the function takes the raw values of its module back from the calibrated
frames (``raw = data * gain + pedestal[cell]``: the detector subtracts the pedestal of
the memory cell its module recorded and divides by its gain, both known exactly), applies the
non-linearity table to them, subtracts the pedestal, divides ``n`` and ``p`` by their
flat-field planes and sums each ROI over the pixels good in all three ROIs. Sums are
in photons (``photons_per_adu`` of the corrections). Outputs: ``sum_n``, ``sum_0``,
``sum_p`` (photons), ``npix_n``, ``npix_0``, ``npix_p``, ``saturated`` (a good ROI pixel
reached the saturation level) and the ratios ``ratio_n = n/0`` and ``ratio_p = p/0``.
See ``docs/boz.md``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from smalldata.boz import ORDERS
from smalldata.boz.corrections import BozCorrections
from smalldata.boz.kernels import frame_roi_sums
from smalldata.boz.nonlinearity import NonLinearity
from smalldata.boz.rois import check_rois, crop, roi_shape, union_box
from smalldata.constants import DSSC_ADC_MAX, DSSC_N_MODULES
from smalldata.detectors.dssc import DSSC
from smalldata.errors import CalibrationError, ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames


class BOZ(DetObjectFunc):
    """Corrected n, 0 and p ROI sums of a BOZ measurement.

    Parameters
    ----------
    name : str
        Output prefix.
    module : int
        The module with the three beams (must match the corrections).
    corrections : str
        The corrections file of ``smd_boz``; a relative path is taken in the folder of the
        detector's dark constants file (the config's ``calib_dir``).
    rois : dict or None
        ``{n: [y0, y1, x0, x1], "0": [...], p: [...]}``: ROIs for ``smd_boz`` instead of finding
        them; when given they must equal the corrections' ROIs.
    use_nonlinearity : bool
        Apply the lookup table (with the flat field fitted after it); False uses the flat field
        fitted without the table (a quick correction while the table is not known).
    sat_level : int or None
        Raw value from which a pixel is saturated; default the corrections'.
    """

    type_name = "boz"

    def __init__(self, name: str = "boz", module: int = 15, corrections: str = "",
                 rois: Optional[Dict[str, List[int]]] = None, use_nonlinearity: bool = True,
                 sat_level: Optional[int] = None):
        super().__init__(name)
        if not 0 <= int(module) < DSSC_N_MODULES:
            raise ConfigError("module", f"module {module} does not exist; DSSC modules are 0..{DSSC_N_MODULES - 1}")
        if not corrections:
            raise ConfigError("corrections", "give the BOZ corrections file made by smd_boz "
                                             "(e.g. boz_p002937_r0614_m15_dssc.json in calib_dir)")
        if sat_level is not None and not 0 < int(sat_level) <= DSSC_ADC_MAX:
            raise ConfigError("sat_level", f"must be within 1..{DSSC_ADC_MAX}, got {sat_level}")
        self.module = int(module)
        self.corrections = str(corrections)
        self.rois = None if rois is None else check_rois(rois, "rois")
        self.use_nonlinearity = bool(use_nonlinearity)
        self.sat_level = None if sat_level is None else int(sat_level)
        self.corr: Optional[BozCorrections] = None
        self.corrections_path: Optional[Path] = None

    # ------------------------------------------------------------------ set-up
    def resolve_corrections(self, calib_dir: Optional[Path]) -> Path:
        """The corrections file: absolute, or relative to ``calib_dir``."""
        path = Path(self.corrections)
        if not path.is_absolute() and calib_dir is not None:
            path = Path(calib_dir) / path
        return path

    def load(self, corr: BozCorrections, detector: str) -> None:
        """Take corrections (checked against this function's module, detector and ROIs)."""
        corr.check_for(self.module, detector, f"BOZ corrections {self.corrections_path or self.corrections}")
        if self.rois is not None and self.rois != corr.rois:
            raise ConfigError("rois", f"{self.rois} differ from the ROIs of the corrections {corr.rois}; "
                                      "rerun smd_boz with these ROIs or remove them from the config")
        if not self.use_nonlinearity and corr.flat_field_linear is None:
            raise CalibrationError("the corrections have no flat field without the table; "
                                   "set use_nonlinearity: true")
        self.corr = corr

    def setFromDet(self, det) -> None:
        det_type = getattr(det, "type", DSSC)
        if det_type.kind != "dssc":  # zone-plate beams on a DSSC module, its 9-bit non-linearity table
            raise ConfigError("functions", f"the BOZ function works on the DSSC only; detector "
                                           f"{getattr(det, 'name', '?')} is a {det_type.kind} ({det_type.name}): "
                                           "remove boz from its functions")
        super().setFromDet(det)
        if getattr(det, "common_mode", "none") != "none":
            raise ConfigError("common_mode", "the BOZ function needs the raw values back from the calibrated "
                                             "frames; set the detector's common_mode to none")
        calib_dir = Path(det.dark_file).parent if getattr(det, "dark_file", None) else None
        self.corrections_path = self.resolve_corrections(calib_dir)
        self.load(BozCorrections.load(self.corrections_path), det.name)
        corr = self.corr
        j = det.module_index(self.module)
        self._ped = np.ascontiguousarray(det.pedestal[j])  # (C, 128, 512)
        gain = det.gain
        self._gain = None if gain is None else (np.asarray(gain)[j] if np.ndim(gain) else float(gain))
        self._gain_image = np.ascontiguousarray(np.broadcast_to(np.float32(1.0) if gain is None else
                                                                np.asarray(self._gain, np.float32),
                                                                self._ped.shape[1:]))
        mask = det.mask[j]
        self._common = np.logical_and.reduce([crop(mask, corr.rois, o) for o in ORDERS])
        self._prepare(corr)

    def _prepare(self, corr: BozCorrections) -> None:
        shape = roi_shape(corr.rois)
        ff = corr.flat_field if self.use_nonlinearity else corr.flat_field_linear
        nl = corr.nonlinearity if self.use_nonlinearity else NonLinearity.identity()
        self._lut = nl.lut.astype(np.float32)
        planes = ff.planes(shape)
        common = self._common
        with np.errstate(divide="ignore"):
            self._weights = {"n": np.where(common, 1.0 / planes["n"], 0.0).astype(np.float32),
                             "0": common.astype(np.float32),
                             "p": np.where(common, 1.0 / planes["p"], 0.0).astype(np.float32)}
        self._npix = int(common.sum())
        self._weight_stack = np.ascontiguousarray(np.stack([self._weights[o] for o in ORDERS]))
        self._sat = self.sat_level if self.sat_level is not None else corr.sat_level

    # ------------------------------------------------------------------ processing
    def required_modules(self):
        return (self.module,)

    def required_region(self):
        if self.corr is not None:
            return union_box(self.corr.rois)
        return union_box(self.rois) if self.rois is not None else None

    def raw_values(self, frames: Frames) -> np.ndarray:
        """(N, h, w) int raw values of the union box, recovered from the calibrated frames."""
        y0, y1, x0, x1 = union_box(self.corr.rois)
        oy, ox = frames.origin
        j = frames.module_axis_index(self.module)
        data = frames.data[:, j, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        if self._gain is not None:
            g = self._gain if np.ndim(self._gain) == 0 else self._gain[y0:y1, x0:x1]
            data = data * np.float32(g) if np.ndim(g) == 0 else data * g.astype(np.float32)
        cells = self.det.cell_index(frames.module_cells(self.module))
        raw = np.rint(data + self._ped[cells, y0:y1, x0:x1])
        return np.clip(raw, 0, DSSC_ADC_MAX).astype(np.int16)

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        corr = self.corr
        oy, ox = frames.origin
        j = frames.module_axis_index(self.module)
        cells = self.det.cell_index(frames.module_cells(self.module)).astype(np.int64)
        corners = np.array([corr.rois[o][::2] for o in ORDERS], np.int64)  # (y0, x0) of n, 0, p
        sums = np.zeros((len(frames), 3))
        saturated = np.zeros(len(frames), bool)
        present = frames.valid[:, j].reshape(len(frames), -1).any(axis=1)
        frame_roi_sums(frames.data[:, j], frames.valid[:, j], present, corners - [oy, ox], self._gain_image,
                       self._ped, corners, cells, self._common, self._weight_stack, self._lut, int(self._sat),
                       sums, saturated)
        out: Dict[str, np.ndarray] = {}
        for k, order in enumerate(ORDERS):
            out[f"sum_{order}"] = np.where(present, sums[:, k] * np.float64(corr.photons_per_adu), np.nan)
            out[f"npix_{order}"] = np.where(present, self._npix, 0).astype(np.int32)
        out["saturated"] = saturated & present
        with np.errstate(divide="ignore", invalid="ignore"):
            out["ratio_n"] = out["sum_n"] / out["sum_0"]
            out["ratio_p"] = out["sum_p"] / out["sum_0"]
        return out

    # ------------------------------------------------------------------ description
    def output_units(self) -> Dict[str, str]:
        return {"sum_n": "photon", "sum_0": "photon", "sum_p": "photon", "npix_n": "pixel", "npix_0": "pixel",
                "npix_p": "pixel", "ratio_n": "1", "ratio_p": "1"}

    def config_arrays(self) -> Dict[str, object]:
        if self.corr is None:
            return {}
        corr = self.corr
        ff = corr.flat_field if self.use_nonlinearity else corr.flat_field_linear
        lut = corr.nonlinearity.lut if self.use_nonlinearity else np.arange(DSSC_ADC_MAX + 1, dtype=np.float64)
        return {"rois": np.array([corr.rois[o] for o in ORDERS], np.int64), "nl_lut": lut,
                "flat_field_n": np.asarray(ff.n, float), "flat_field_p": np.asarray(ff.p, float),
                "common_mask": self._common, "corrections_file": str(self.corrections_path),
                "corrections_json": json.dumps(corr.to_dict())}

    def config_units(self) -> Dict[str, str]:
        return {"nl_lut": "ADU", "rois": "pixel"}
