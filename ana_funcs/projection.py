"""Projection of a 2-D image (an ROI's pixels, or a module) onto one axis."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from smalldata.errors import ConfigError
from smalldata.fused.plan import fused_results
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, zero_invalid

from .roi import check_module_roi, check_roi_on, check_roi_on_type, crop_module, whole_module


class Projection(DetObjectFunc):
    """Sum or mean of the good pixels along one image axis.

    Parameters
    ----------
    name : str
        Output prefix.
    axis : int
        Image axis summed over: 0 sums the rows (a profile along the columns),
        1 sums the columns (a profile along the rows).
    mean : bool
        Mean over the good pixels instead of the sum (NaN where a line has none).
    threshold : float or None
        Pixels below this value (data units) count as 0.
    module : int or None
        Module to project when used directly on the detector (not as a child).
    """

    def __init__(self, name: str = "proj", axis: int = 0, mean: bool = False,
                 threshold: Optional[float] = None, module: Optional[int] = None):
        super().__init__(name)
        if axis not in (0, 1):
            raise ConfigError("axis", f"must be 0 (sum over rows) or 1 (sum over columns), got {axis}")
        self.axis = int(axis)
        self.mean = bool(mean)
        self.threshold = threshold
        if module is not None:
            check_module_roi(module, [0, 1, 0, 1])
        self.module = module

    def check_detector_type(self, detector_type) -> None:
        """The module must be one of the detector's (called when the config is read)."""
        if self.module is not None:
            check_roi_on_type(detector_type, self.module, [0, 1, 0, 1])

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        if self.module is not None:
            check_roi_on(det, self.module, whole_module(det))

    def required_modules(self):
        return None if self.module is None else (self.module,)

    def fuse(self, plan) -> bool:
        """Take the fused path on a whole module: the kernel sums its rows and columns."""
        if self.module is None:
            return False
        plan.add_roi(self, self.module, whole_module(self.det), self.threshold)
        return True

    def fuse_child(self, plan, roi_index: int) -> bool:
        """As the child of a fused ROI: the profile is the ROI's row or column sums (no own threshold)."""
        if self.threshold is not None:
            return False
        plan.bind(self, "roi_child", roi_index)
        return True

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        fused = fused_results(frames, self)
        if fused is not None:
            if self.axis == 0:
                profile, npix = fused.col_sums, fused.col_npix
            else:
                profile, npix = fused.row_sums, fused.row_npix
            return self._outputs(profile, npix)
        if frames.modules is not None:
            if self.module is None:
                raise ConfigError(self.name, "a projection of the whole detector needs 'module', "
                                             "or make it a child of an roi")
            data, valid = crop_module(frames, self.module, whole_module(self.det))
        else:
            data, valid = frames.data, frames.valid
        if frames.zeroed and self.threshold is None:
            values = data  # invalid pixels are already 0 (an ROI's crop)
        else:
            values = zero_invalid(data, valid, self.threshold)
        return self._outputs(values.sum(axis=1 + self.axis, dtype=np.float64),
                             valid.sum(axis=1 + self.axis, dtype=np.int32))

    def _outputs(self, profile: np.ndarray, npix: np.ndarray) -> Dict[str, np.ndarray]:
        """Outputs from the float64 line sums and valid pixels per line."""
        if self.mean:
            with np.errstate(invalid="ignore", divide="ignore"):
                profile = np.where(npix > 0, profile / np.maximum(npix, 1), np.nan)
        return {"profile": profile, "npix": npix}

    def output_units(self) -> Dict[str, str]:
        units = self.det.units if self.det is not None else "ADU"
        return {"profile": units, "npix": "pixel"}
