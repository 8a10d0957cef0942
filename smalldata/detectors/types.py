"""The description of a kind of detector that the event loop, calibration and output work from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class DetectorType:
    """What the rest of the code needs to know about a kind of detector.

    Parameters
    ----------
    kind : str
        ``"dssc"`` or ``"camera"``: the config's ``type``.
    name : str
        Model, for messages and ``UserDataCfg`` (``"DSSC 1M"``, a camera preset's name).
    n_modules : int
        Modules (sensor tiles read as separate sources); 1 for a camera.
    module_shape : (int, int)
        Pixels (rows, columns) of one module.
    per_pulse : bool
        True: frames per X-ray pulse (memory cells); False: one image per train.
    raw_dtype : str
        Raw data type.
    saturation : int
        Raw value at or above which a pixel is saturated.
    pixel_size : (float, float)
        Pixel pitch (rows, columns) in metres.
    asic_shape : (int, int) or None
        ASIC tiles of a module (edge masks, common mode); None: no tiles.
    source_pattern : str
        INSTRUMENT source of module ``m``: ``source_pattern.format(module=m)``.
    image_key : str
        Key of the raw image in that source.
    train_id_offset : int
        Added to the recorded train ids to get the train an image belongs to.
    control_source : str, optional
        CONTROL source with the detector's settings (a camera's device).
    settings : tuple of str
        CONTROL keys a dark must share with the data.
    """

    kind: str
    name: str
    n_modules: int
    module_shape: Tuple[int, int]
    per_pulse: bool
    raw_dtype: str
    saturation: int
    pixel_size: Tuple[float, float]
    source_pattern: str
    image_key: str
    asic_shape: Optional[Tuple[int, int]] = None
    train_id_offset: int = 0
    control_source: Optional[str] = None
    settings: Tuple[str, ...] = ()

    def source(self, module: int = 0) -> str:
        """The INSTRUMENT source of module ``module``."""
        return self.source_pattern.format(module=module)

    @property
    def frame_bytes(self) -> int:
        """Raw bytes of one frame of the whole detector."""
        return self.n_modules * self.module_shape[0] * self.module_shape[1] * np.dtype(self.raw_dtype).itemsize

    @property
    def rate(self) -> str:
        """``"pulse"`` or ``"train"``: what one row of the detector's output is."""
        return "pulse" if self.per_pulse else "train"
