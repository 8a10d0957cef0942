"""A user's own analysis function in a few lines: the fraction of pixels above a level.

Use it from a config without touching smalldata::

    functions:
      - type: custom_function:BrightFraction     # module:Class, module on PYTHONPATH
        name: bright
        level: 2.0
        module: 3

Its outputs appear as /dssc/bright_fraction and /dssc/bright_npix, its parameters in
/UserDataCfg/dssc/bright.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames


class BrightFraction(DetObjectFunc):
    """Fraction of the good pixels of one module whose value exceeds ``level``.

    Parameters
    ----------
    name : str
        Output prefix.
    level : float
        Threshold in the detector's data units (ADU, or photons with a gain).
    module : int
        Detector module.
    """

    def __init__(self, name: str = "bright", level: float = 1.0, module: int = 0):
        super().__init__(name)
        self.level = level
        self.module = module

    def required_modules(self):
        return (self.module,)

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        j = frames.module_axis_index(self.module)
        data, valid = frames.data[:, j], frames.valid[:, j]
        npix = valid.sum(axis=(1, 2))
        bright = (valid & (data > self.level)).sum(axis=(1, 2))
        return {"fraction": bright / np.maximum(npix, 1), "npix": npix.astype(np.int32)}

    def output_units(self) -> Dict[str, str]:
        return {"npix": "pixel"}
