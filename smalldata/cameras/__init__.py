"""Per-train cameras of the SCS instrument: presets (sources, keys, shapes) and their dark model.

:mod:`.presets` names each camera as the facility records it (hRIXS Andor and MaranaX, the Viking's
Andor Newton, a FastCCD); :mod:`.dark` characterises a dark run of one camera (mean, noise, bad
pixels) and refuses a dark of another shape or mode. See ``docs/detectors/cameras.md``.
"""
from .dark import CameraDark, characterise_dark, check_dark
from .presets import PRESETS, CameraPreset, get_preset

__all__ = ["CameraPreset", "PRESETS", "get_preset", "CameraDark", "characterise_dark", "check_dark"]
