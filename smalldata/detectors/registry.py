"""The detector type of a config entry (``detectors.<name>.type``)."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from smalldata.errors import ConfigError

from .camera import camera_type, preset_of
from .dssc import DSSC
from .types import DetectorType

#: config ``type`` values; ``DSSC1M`` is the name older configs use for ``dssc``
TYPE_NAMES = ("dssc", "camera")
ALIASES = {"DSSC1M": "dssc"}


def type_kind(value: Any, where: str) -> str:
    """The canonical ``type`` of a detector entry (``dssc`` when absent); a one-line error otherwise."""
    if value is None:
        return "dssc"
    if isinstance(value, str) and (value in TYPE_NAMES or value in ALIASES):
        return ALIASES.get(value, value)
    close = difflib.get_close_matches(str(value), TYPE_NAMES + tuple(ALIASES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"{where}.type", f"unknown detector type {value!r}; {hint}use one of {', '.join(TYPE_NAMES)}")


def detector_type(det_config: Mapping[str, Any], where: str = "detectors") -> DetectorType:
    """The :class:`DetectorType` of a validated detector entry."""
    if det_config["type"] == "camera":
        return camera_type(preset_of(det_config, where), det_config.get("pixel_size"))
    return DSSC
