"""Camera presets: what a per-train SCS camera records, and where.

Each preset names the camera's Karabo device (its CONTROL source, with the camera settings), the
output channel and key of the images (INSTRUMENT source, one entry per train), the image shape
``(ny, nx)``, the raw dtype and saturation, the pixel size and the train-id offset the facility
tools apply to it. Source names are those of the SCS instrument (docs/detectors/cameras.md says
where each was found).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from smalldata.errors import ConfigError

#: Key of the image in the facility's camera output channels (``data/image/pixels`` in the file).
IMAGE_KEY = "data.image.pixels"


@dataclass(frozen=True)
class CameraPreset:
    """What one per-train camera records.

    Parameters
    ----------
    name : str
        Preset name (``newton``, ``hrixs``, ``maranax``, ``fastccd``).
    device : str
        Karabo device id, the CONTROL source with the camera's settings.
    channel : str
        Output channel of the images; the INSTRUMENT source is ``device:channel``.
    key : str
        Key of the image in the output channel.
    shape : tuple of int
        Image shape ``(ny, nx)`` in pixels (rows, columns).
    dtype : str
        Raw data type.
    saturation : int
        Largest raw value (ADU); pixels at or above it are saturated.
    pixel_size : float
        Pixel pitch in metres.
    train_id_offset : int
        Added to the recorded train ids to get the train the image belongs to (the facility's
        ToolBox applies -1 to the Newton camera; see docs/detectors/viking.md).
    settings : tuple of str
        CONTROL keys of ``device`` that a dark must share with the data (camera modes).
    """

    name: str
    device: str
    shape: Tuple[int, int]
    pixel_size: float
    channel: str = "daqOutput"
    key: str = IMAGE_KEY
    dtype: str = "uint16"
    saturation: int = 65535
    train_id_offset: int = 0
    settings: Tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """The INSTRUMENT source of the images, ``device:channel``."""
        return f"{self.device}:{self.channel}"

    def with_shape(self, shape: Tuple[int, int]) -> "CameraPreset":
        """The same camera with another image shape (a region of interest, or a small simulated run)."""
        ny, nx = (int(v) for v in shape)
        return CameraPreset(self.name, self.device, (ny, nx), self.pixel_size, self.channel, self.key, self.dtype,
                            self.saturation, self.train_id_offset, self.settings)


#: The SCS cameras. The Newton's CONTROL keys preampGain and HighCapacity choose its
#: photoelectrons per count (smalldata.spectro.viking).
PRESETS: Dict[str, CameraPreset] = {
    "newton": CameraPreset("newton", "SCS_EXP_NEWTON/CAM/CAMERA", (512, 2048), 13.5e-6, train_id_offset=-1,
                           settings=("preampGain", "HighCapacity")),
    "hrixs": CameraPreset("hrixs", "SCS_HRIXS_DET/CAM/CAMERA", (2048, 2048), 13.5e-6),
    "maranax": CameraPreset("maranax", "SCS_HRIXS_MARANAX/CAM/CAMERA", (2048, 2048), 11.0e-6),
    "fastccd": CameraPreset("fastccd", "SCS_CDIDET_FCCD2M/DAQ/FCCD", (1934, 960), 30.0e-6),
}


def get_preset(name: str, path: str = "type") -> CameraPreset:
    """The preset called ``name``; a one-line :class:`ConfigError` naming the known ones otherwise.

    Parameters
    ----------
    name : str
        Preset name.
    path : str
        Config path named in the error.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(path, f"unknown camera {name!r}; use one of {', '.join(sorted(PRESETS))}") from None
