"""What a detector object writes into ``UserDataCfg/<det>``: its arrays, their units, its settings."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np


class DetObjectDescription:
    """``config_arrays``, ``config_units`` and ``params`` of :class:`~smalldata.calib.detobject.DetObject`."""

    def config_arrays(self) -> Dict[str, np.ndarray]:
        """Arrays for ``UserDataCfg/<det>``: constants, positions, masks."""
        arrays = {
            "pedestal": self.pedestal,
            **({"noise": self._noise} if self.has_noise else {}),
            "x": self.x, "y": self.y, "z": self.z,
            "mask": self.mask,
            "status_mask": self.status_mask,
            "cell_ids": self.cell_ids,
            "modules": np.array(self.modules, dtype=np.int64),
        }
        if self.gain is not None:
            arrays["gain"] = (self.gain if isinstance(self.gain, np.ndarray)
                              else np.full(self.mask.shape, self.gain, np.float32))
        for key, value in self.masks.items():
            arrays[f"mask_{key}"] = value
        return arrays

    def config_units(self) -> Dict[str, str]:
        """Units of the :meth:`config_arrays` that have one."""
        return {"pedestal": "ADU", "noise": "ADU", "gain": "ADU/photon", "x": "m", "y": "m", "z": "m"}

    def params(self) -> Dict[str, Any]:
        """Scalar settings of the detector (for ``UserDataCfg``)."""
        user_mask = self.user_mask
        described = {
            "name": self.name,
            "type": self.type.kind,
            "per": self.type.rate,
            "model": self.type.name,
            "modules": list(self.modules),
            "units": self.units,
            "gain": (None if self.gain is None else "map" if isinstance(self.gain, np.ndarray) else self.gain),
            "common_mode": self.common_mode,
            "common_mode_max_adu": self.common_mode_max_adu,
            "common_mode_min_pixels": self.common_mode_min_pixels,
            "mask_asic_edges": self.mask_asic_edges,
            "user_mask": (None if user_mask is None else "array" if isinstance(user_mask, np.ndarray)
                          else str(Path(user_mask))),
            "geometry_file": self.geometry_file,
            "quadrant_positions": self.quadrant_positions,
            "dark_file": self.dark_file,
            "dark_run": self.dark_run,
            "n_cells": int(len(self.cell_ids)),
        }
        if self.type.kind != "dssc":  # a camera: where its images come from, its mode, its grid
            described.update({"source": self.type.source(), "train_id_offset": self.type.train_id_offset,
                              "pixel_size": list(self.type.pixel_size),
                              "settings": dict(self.settings)})
            for key in ("common_mode", "common_mode_max_adu", "common_mode_min_pixels", "mask_asic_edges",
                        "geometry_file", "quadrant_positions"):
                described.pop(key)
        return described
