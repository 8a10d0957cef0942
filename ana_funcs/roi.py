"""Region of interest on one detector module: sum, mean, max, centre of mass, pixel count."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.errors import ConfigError
from smalldata.fused.plan import fused_results
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, zero_invalid


def check_module_roi(module: int, roi, shape: Optional[Tuple[int, int]] = None,
                     n_modules: Optional[int] = None) -> List[int]:
    """Validate ``module`` and ``roi = [y0, y1, x0, x1]`` (module pixel coordinates, end exclusive).

    Without ``shape`` and ``n_modules`` (when the config is read, before the detector is known) only
    the form is checked; :func:`check_roi_on` checks them against the detector.
    """
    if module < 0 or (n_modules is not None and module >= n_modules):
        last = "" if n_modules is None else f"; the detector's modules are 0..{n_modules - 1}"
        raise ConfigError("module", f"module {module} does not exist{last}")
    if roi is None or len(roi) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in roi):
        raise ConfigError("roi", f"expected [y0, y1, x0, x1] as 4 integers, got {roi!r}")
    y0, y1, x0, x1 = (int(v) for v in roi)
    if shape is None:
        if not (0 <= y0 < y1 and 0 <= x0 < x1):
            raise ConfigError("roi", f"[{y0}, {y1}, {x0}, {x1}] is empty or negative; need 0 <= y0 < y1 and "
                                     "0 <= x0 < x1")
        return [y0, y1, x0, x1]
    if not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
        raise ConfigError("roi", f"[{y0}, {y1}, {x0}, {x1}] is outside the {shape[0]} x {shape[1]} module or empty; "
                                 f"need 0 <= y0 < y1 <= {shape[0]} and 0 <= x0 < x1 <= {shape[1]}")
    return [y0, y1, x0, x1]


def check_roi_on(det, module: int, roi) -> List[int]:
    """:func:`check_module_roi` against the detector ``det`` (its type's module shape and count)."""
    return check_roi_on_type(getattr(det, "type", DSSC), module, roi)


def check_roi_on_type(detector_type, module: int, roi) -> List[int]:
    """:func:`check_module_roi` against a :class:`~smalldata.detectors.types.DetectorType`."""
    return check_module_roi(module, roi, tuple(detector_type.module_shape), detector_type.n_modules)


def whole_module(det) -> List[int]:
    """``[0, rows, 0, columns]``: the ROI of a whole module of ``det``."""
    rows, cols = getattr(det, "type", DSSC).module_shape
    return [0, int(rows), 0, int(cols)]


def crop_module(frames: Frames, module: int, roi) -> tuple:
    """(data, valid) of ``roi`` on ``module`` from detector frames, each (N, h, w).

    ``roi`` is in module pixel coordinates; frames calibrated on a region of each module
    (``frames.origin``) must contain it.
    """
    y0, y1, x0, x1 = roi
    if frames.modules is None:
        return frames.data[:, y0:y1, x0:x1], frames.valid[:, y0:y1, x0:x1]
    oy, ox = frames.origin
    h, w = frames.data.shape[-2:]
    if not (oy <= y0 and y1 <= oy + h and ox <= x0 and x1 <= ox + w):
        raise ValueError(f"roi {list(roi)} is outside the calibrated region rows {oy}..{oy + h}, "
                         f"columns {ox}..{ox + w}")
    j = frames.module_axis_index(module)
    ys, xs = slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox)
    return frames.data[:, j, ys, xs], frames.valid[:, j, ys, xs]


class ROI(DetObjectFunc):
    """Statistics of a rectangular region of one module.

    Parameters
    ----------
    name : str
        Output prefix.
    module : int
        Detector module (0..15).
    roi : list of int
        ``[y0, y1, x0, x1]`` in module pixel coordinates (rows, columns; end exclusive).
    threshold : float or None
        Pixels below this value (data units: ADU, or photons with a gain) count as 0.
    threshold_max : float or None
        Pixels above this value are excluded (treated as bad) in that frame.
    write_image : bool
        Also output the ROI pixels (invalid pixels as NaN).
    """

    def __init__(self, name: str = "roi", module: int = 0, roi: List[int] = (0, 128, 0, 512),
                 threshold: Optional[float] = None, threshold_max: Optional[float] = None,
                 write_image: bool = False):
        super().__init__(name)
        self.roi = check_module_roi(module, roi)
        self.module = int(module)
        if threshold is not None and threshold_max is not None and threshold_max <= threshold:
            raise ConfigError("threshold_max", f"must be above threshold ({threshold}), got {threshold_max}")
        self.threshold = threshold
        self.threshold_max = threshold_max
        self.write_image = bool(write_image)

    def check_detector_type(self, detector_type) -> None:
        """The module and region must lie on the detector (called when the config is read)."""
        check_roi_on_type(detector_type, self.module, self.roi)

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        check_roi_on(det, self.module, self.roi)

    def required_modules(self):
        return (self.module,)

    def required_region(self):
        return tuple(self.roi)

    def _select(self, frames: Frames):
        data, valid = crop_module(frames, self.module, self.roi)
        if self.threshold_max is not None:
            valid = valid & (data <= self.threshold_max)
        return zero_invalid(data, valid, self.threshold), valid

    def fuse(self, plan) -> bool:
        """Take the fused path: the kernel sums the ROI's rows and columns in its pass.

        Children that are not fused themselves get the ROI's pixels, written by the kernel.
        """
        index = plan.add_roi(self, self.module, self.roi, self.threshold, self.threshold_max)
        for child in self.children:
            join = getattr(child, "fuse_child", None)
            if join is None or not join(plan, index):
                plan.need_crop(index)
        if self.write_image:
            plan.need_crop(index)
        return True

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        fused = fused_results(frames, self)
        if fused is not None:
            return self._fused_statistics(fused)
        return self._statistics(*self._select(frames))

    def process_and_hand_on(self, frames: Frames):
        """Statistics of the ROI, and its pixels (invalid ones 0) for the children."""
        fused = fused_results(frames, self)
        if fused is not None:  # the kernel's crop (if a child reads pixels) and the sums for fused children
            return self._fused_statistics(fused), frames.derived(fused.values, fused.valid, zeroed=True,
                                                                 fused=frames.fused)
        values, valid = self._select(frames)
        return self._statistics(values, valid), frames.derived(values, valid, zeroed=True)

    def child_frames(self, frames: Frames, outputs) -> Frames:
        return self.process_and_hand_on(frames)[1]

    def _fused_statistics(self, fused) -> Dict[str, np.ndarray]:
        npix = fused.row_npix.sum(axis=1, dtype=np.int32)
        return self._outputs(fused.row_sums, fused.col_sums, npix, fused.vmax, fused.values, fused.valid)

    def _statistics(self, values: np.ndarray, valid: np.ndarray) -> Dict[str, np.ndarray]:
        n = len(values)
        values64 = values.astype(np.float64)
        row_sums = values64.sum(axis=2)  # (N, h)
        col_sums = values64.sum(axis=1)  # (N, w)
        npix = np.count_nonzero(valid.reshape(n, -1), axis=1).astype(np.int32)
        vmax = values.reshape(n, -1).max(axis=1) if values.size else np.full(n, np.nan, np.float32)
        # invalid pixels are 0 in values: recompute the (rare) frames whose good pixels are all below 0
        redo = np.flatnonzero((vmax <= 0) & (npix > 0))
        if len(redo):
            vmax[redo] = np.max(values[redo], axis=(1, 2), where=valid[redo], initial=-np.inf)
        return self._outputs(row_sums, col_sums, npix, vmax, values, valid)

    def _outputs(self, row_sums, col_sums, npix, vmax, values, valid) -> Dict[str, np.ndarray]:
        """Outputs from float64 row and column sums, valid pixels and maximum per frame."""
        y0, _, x0, _ = self.roi
        total = row_sums.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(npix > 0, total / np.maximum(npix, 1), np.nan)
            vmax = np.where(npix > 0, vmax, np.nan).astype(np.float32)
            # row-wise multiply and sum (not a BLAS product): the result of a frame must not
            # depend on how many frames share the batch
            rows = np.arange(row_sums.shape[1], dtype=np.float64) + y0
            cols = np.arange(col_sums.shape[1], dtype=np.float64) + x0
            com_y = np.where(total > 0, (row_sums * rows).sum(axis=1) / total, np.nan)
            com_x = np.where(total > 0, (col_sums * cols).sum(axis=1) / total, np.nan)
        out = {"sum": total, "mean": mean, "max": vmax, "com_y": com_y, "com_x": com_x, "npix": npix}
        if self.write_image:
            out["image"] = np.where(valid, values, np.float32(np.nan)).astype(np.float32)
        return out

    def output_units(self) -> Dict[str, str]:
        units = self.det.units if self.det is not None else "ADU"
        return {"sum": units, "mean": units, "max": units, "image": units,
                "com_y": "pixel", "com_x": "pixel", "npix": "pixel"}
