"""Reading a per-train camera from a run with extra-data: frames, train ids and settings.

The frames come through extra-data's own selection (``run.select(source, key)``), so whatever
extra-data does with the facility's files (sequence files, missing trains) applies. The train-id
offset of the preset is added to the recorded ids (docs/detectors/viking.md).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import DataError

from .presets import CameraPreset


def check_camera_source(run, source: str, key: str, camera: str, what: str,
                        fix: str = "choose the camera that recorded this run") -> None:
    """A one-line :class:`DataError` when ``run`` lacks the camera's image source or key.

    Parameters
    ----------
    run : extra_data.DataCollection
    source, key : str
        The camera's INSTRUMENT source and image key.
    camera : str
        The camera's name (a preset), said in the message.
    what : str
        How the run (or the config entry) is named in the message.
    fix : str
        What the user should do, said last.
    """
    if source not in run.instrument_sources:
        cams = sorted(s for s in run.instrument_sources if "CAM" in s or "FCCD" in s)
        hint = f"; camera sources in the run: {', '.join(cams)}" if cams else "; the run has no camera source"
        raise DataError(f"{what}: camera source {source} ({camera}) is not in the run{hint}; {fix}")
    if key not in run[source].keys():
        raise DataError(f"{what}: source {source} has no key {key}; check the camera")


def _check_source(run, preset: CameraPreset, what: str) -> None:
    check_camera_source(run, preset.source, preset.key, preset.name, what)


def read_frames(run, preset: CameraPreset, train_ids: Optional[Sequence[int]] = None,
                what: str = "run") -> Tuple[np.ndarray, np.ndarray]:
    """The camera's images of a run (or of some of its trains).

    Parameters
    ----------
    run : extra_data.DataCollection
    preset : CameraPreset
    train_ids : sequence of int, optional
        Recorded train ids to read (all if None).
    what : str
        How the run is named in error messages.

    Returns
    -------
    train_ids : (N,) int64
        Train ids the images belong to (recorded ids plus the preset's offset).
    frames : (N, ny, nx) raw dtype
    """
    _check_source(run, preset, what)
    sel = run.select(preset.source, preset.key, require_all=False)
    if train_ids is not None:
        from extra_data import by_id

        sel = sel.select_trains(by_id[list(int(t) for t in train_ids)])
    kd = sel[preset.source, preset.key]
    frames = kd.ndarray()
    if frames.shape[1:] != tuple(preset.shape):
        raise DataError(f"{what}: {preset.source} images are {frames.shape[1:]}, the {preset.name} preset expects "
                        f"{tuple(preset.shape)}; use the preset's with_shape() for a region of interest")
    ids = np.asarray(kd.train_id_coordinates(), dtype=np.int64) + preset.train_id_offset
    return ids, frames


def read_settings(run, preset: CameraPreset, what: str = "run") -> Dict[str, float]:
    """The camera's CONTROL settings (``preset.settings``) at the first train of the run."""
    out: Dict[str, float] = {}
    if not preset.settings:
        return out
    if preset.device not in run.control_sources:
        raise DataError(f"{what}: the camera's control source {preset.device} is not in the run; its settings "
                        f"({', '.join(preset.settings)}) are needed")
    src = run[preset.device]
    for name in preset.settings:
        key = f"{name}.value"
        if key not in src.keys():
            raise DataError(f"{what}: {preset.device} has no key {key}; the camera's settings are needed")
        out[name] = float(run[preset.device, key].as_single_value())
    return out
