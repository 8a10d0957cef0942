"""A user's own analysis function in a few lines: the fraction of pixels above a level.

Use it from a config without touching smalldata::

    functions:
      - type: custom_function:BrightFraction     # module:Class, module on PYTHONPATH
        name: bright
        level: 2.0
        module: 3

Its outputs appear as /dssc/bright_fraction and /dssc/bright_npix, its parameters in
/UserDataCfg/dssc/bright. ``python custom_function.py`` checks it with
:mod:`smalldata.testing` (the same checks the producer makes at set-up, plus batch
independence); call :func:`self_check` from your own tests the same way.
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

    def output_layout(self):
        return {"fraction": (np.float64, ()), "npix": (np.int32, ())}


def self_check() -> Dict[str, np.ndarray]:
    """Check :class:`BrightFraction` on synthetic frames; returns its outputs.

    Raises if a parameter is not stored, the input is modified, the outputs differ from
    ``output_layout()`` or depend on which frames share the batch.
    """
    from smalldata.testing import check_function, make_detector, make_frames

    rng = np.random.default_rng(0)
    frames = make_frames(rng.exponential(1.0, (6, 2, 128, 512)), modules=(2, 3))
    func = BrightFraction(level=2.0, module=3)
    out = check_function(func, frames, det=make_detector(modules=(2, 3)))
    expected = (frames.data[:, 1] > 2.0).mean(axis=(1, 2))
    if not np.allclose(out["bright_fraction"], expected, rtol=1e-12):
        raise AssertionError("BrightFraction does not give the fraction of pixels above the level")
    return out


if __name__ == "__main__":
    fraction = self_check()["bright_fraction"]
    print(f"BrightFraction passes smalldata.testing.check_function; fractions {np.round(fraction, 4)}")
