"""The dark model of a per-train camera: mean, noise and bad pixels from a dark run's frames.

A camera has one dark frame per pixel (no memory cells). Bad pixels: dead (noise below
``dead_noise`` ADU), hot (mean further than ``hot_sigma`` robust widths from the median mean) and
noisy (noise further than ``noisy_sigma`` robust widths above the median noise). ``mask`` is True
for good pixels. The camera settings (``preampGain``, ``HighCapacity``, ...) are kept with the
dark: a dark recorded in another mode does not apply (:func:`check_dark`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import h5py
import numpy as np

from smalldata.errors import CalibrationError

#: Bad-pixel reason bits (0 = good), as for the DSSC.
DEAD, HOT, NOISY = 1, 2, 4
#: Default bad-pixel thresholds: robust widths of a hot mean and of a noisy noise, the noise (ADU) of a dead pixel
HOT_SIGMA, NOISY_SIGMA, DEAD_NOISE = 8.0, 8.0, 1e-3


@dataclass
class CameraDark:
    """Dark constants of one camera.

    Attributes
    ----------
    mean, noise : (ny, nx) float32 ADU
    status : (ny, nx) uint8 bad-pixel bits (0 = good)
    n_frames : int
    camera : str
        Preset name.
    settings : dict
        Camera settings during the dark (name -> value).
    """

    mean: np.ndarray
    noise: np.ndarray
    status: np.ndarray
    n_frames: int
    camera: str = ""
    settings: Dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> Tuple[int, int]:
        """Image shape (ny, nx)."""
        return tuple(self.mean.shape)

    @property
    def mask(self) -> np.ndarray:
        """(ny, nx) bool, True = good pixel."""
        return self.status == 0

    def save(self, path) -> None:
        """Write the constants to an HDF5 file (datasets mean, noise, status; settings as attributes)."""
        with h5py.File(path, "w") as f:
            for name, unit in (("mean", "ADU"), ("noise", "ADU"), ("status", "")):
                ds = f.create_dataset(name, data=getattr(self, name))
                if unit:
                    ds.attrs["units"] = unit
            f.attrs.update(n_frames=self.n_frames, camera=self.camera)
            for name, value in self.settings.items():
                f.attrs[f"setting_{name}"] = value

    @classmethod
    def load(cls, path) -> "CameraDark":
        """Read constants written by :meth:`save`."""
        with h5py.File(path, "r") as f:
            settings = {k[len("setting_"):]: float(v) for k, v in f.attrs.items() if k.startswith("setting_")}
            return cls(f["mean"][()], f["noise"][()], f["status"][()], int(f.attrs["n_frames"]),
                       str(f.attrs["camera"]), settings)


def _robust_width(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (the standard deviation for normal values)."""
    med = np.median(values)
    return float(1.4826 * np.median(np.abs(values - med))) or float(np.std(values)) or 1.0


def characterise_dark(frames: np.ndarray, camera: str = "", settings: Optional[Mapping[str, float]] = None,
                      hot_sigma: float = HOT_SIGMA, noisy_sigma: float = NOISY_SIGMA,
                      dead_noise: float = DEAD_NOISE) -> CameraDark:
    """Mean, noise and bad pixels of a camera's dark frames.

    Parameters
    ----------
    frames : (N, ny, nx) array
        Raw dark frames, N >= 2.
    camera : str
        Preset name, kept with the constants.
    settings : mapping, optional
        Camera settings during the dark run.
    hot_sigma, noisy_sigma : float
        Robust widths beyond which a pixel's mean is hot, or its noise noisy.
    dead_noise : float
        Noise (ADU) below which a pixel is dead.

    Returns
    -------
    CameraDark
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) < 2:
        raise CalibrationError(f"a camera dark needs frames (N >= 2, ny, nx), got shape {frames.shape}; "
                               "record a longer dark run")
    data = frames.astype(np.float64)
    mean = data.mean(axis=0)
    noise = data.std(axis=0, ddof=1)
    status = np.zeros(mean.shape, np.uint8)
    status[noise < dead_noise] |= DEAD
    med_mean = np.median(mean)
    status[np.abs(mean - med_mean) > hot_sigma * _robust_width(mean)] |= HOT
    status[noise - np.median(noise) > noisy_sigma * _robust_width(noise)] |= NOISY
    return CameraDark(mean.astype(np.float32), noise.astype(np.float32), status, len(frames), camera,
                      {k: float(v) for k, v in (settings or {}).items()})


def check_dark(dark: CameraDark, shape: Tuple[int, int], settings: Optional[Mapping[str, float]] = None,
               camera: str = "", what: str = "dark") -> None:
    """Refuse, in one line, a dark of another shape, camera or mode than the data.

    Parameters
    ----------
    dark : CameraDark
    shape : (ny, nx)
        Image shape of the data.
    settings : mapping, optional
        Camera settings of the data run; each one the dark recorded must agree.
    camera : str
        Preset name of the data ('' = do not check).
    what : str
        How the dark is named in the message (its file, its run).
    """
    if tuple(dark.shape) != tuple(shape):
        raise CalibrationError(f"{what}: dark images are {dark.shape[0]}x{dark.shape[1]} pixels, the data "
                               f"{shape[0]}x{shape[1]}; use a dark of the same camera and region")
    if camera and dark.camera and camera != dark.camera:
        raise CalibrationError(f"{what}: dark of camera {dark.camera!r}, data of {camera!r}; use a dark of {camera!r}")
    for name, value in (settings or {}).items():
        if name in dark.settings and float(value) != dark.settings[name]:
            raise CalibrationError(f"{what}: dark recorded with {name}={dark.settings[name]:g}, data with "
                                   f"{name}={float(value):g}; record or choose a dark in the same camera mode")
