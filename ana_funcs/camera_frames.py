"""What the camera spectrometer functions (``hrixs``, ``viking``) take from a per-train camera
detector: its one image plane (mask and shape) and each frame's image with invalid pixels 0."""
from __future__ import annotations

import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.plugin.frames import Frames, zero_invalid


def camera_plane(det, what: str) -> tuple:
    """``(mask (ny, nx) bool, (ny, nx))`` of a one-module camera detector; a one-line error otherwise."""
    mask = np.asarray(getattr(det, "mask", None))
    if mask.ndim != 3 or mask.shape[0] != 1:
        raise ConfigError(what, f"needs a camera detector (one image per frame, mask (1, ny, nx)); detector "
                                f"{getattr(det, 'name', '?')!r} has a mask of shape {mask.shape}: use it on a "
                                "detector of type camera")
    return mask[0].astype(bool), tuple(int(v) for v in mask.shape[1:])


def camera_frame_data(frames: Frames, shape: tuple, what: str) -> np.ndarray:
    """(N, ny, nx) float32 of a camera's frames with invalid pixels 0 (read-only; the frames' own
    pixels when calibration zeroed them already, ``frames.zeroed``, else a copy)."""
    data = frames.data
    if data.ndim != 4 or data.shape[1] != 1 or tuple(data.shape[2:]) != tuple(shape):
        raise DataError(f"{what}: frames of shape {data.shape[1:]}, expected (1, {shape[0]}, {shape[1]}) as the "
                        "camera's mask; give the function the camera detector's frames")
    if frames.zeroed and data.dtype == np.float32:
        return data[:, 0]
    return zero_invalid(data[:, 0].astype(np.float32, copy=False), frames.valid[:, 0])
