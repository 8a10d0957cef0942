"""Per-train cameras as a detector type, from a camera preset and the config's overrides."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Optional

from smalldata.cameras.presets import CameraPreset, get_preset

from .types import DetectorType


def preset_of(det_config: Mapping[str, Any], where: str = "detectors") -> CameraPreset:
    """The camera preset of a validated camera entry, with its ``shape`` and ``source`` overrides."""
    preset = get_preset(det_config["camera"], f"{where}.camera")
    if det_config.get("shape") is not None:
        preset = preset.with_shape(tuple(det_config["shape"]))
    changes = {}
    if det_config.get("source") is not None:
        changes["device"] = det_config["source"]
    if det_config.get("train_id_offset") is not None:
        changes["train_id_offset"] = int(det_config["train_id_offset"])
    if changes:
        preset = replace(preset, **changes)
    return preset


def camera_type(preset: CameraPreset, pixel_size: Optional[float] = None) -> DetectorType:
    """The detector type of a per-train camera: one module, one image per train, no memory cells."""
    pitch = float(pixel_size if pixel_size is not None else preset.pixel_size)
    return DetectorType(
        kind="camera",
        name=preset.name,
        n_modules=1,
        module_shape=tuple(preset.shape),
        per_pulse=False,
        raw_dtype=preset.dtype,
        saturation=int(preset.saturation),
        pixel_size=(pitch, pitch),
        source_pattern=preset.source,
        image_key=preset.key,
        train_id_offset=int(preset.train_id_offset),
        control_source=preset.device,
        settings=tuple(preset.settings),
    )
