"""The keys of a cube's second axis (``detectors.<det>.cube.second``, docs/cubes.md)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from smalldata.config.schema import REQUIRED, Field, apply_schema, positive
from smalldata.errors import ConfigError

SECOND_AXIS_SCHEMA: Dict[str, Field] = {
    "scan": Field(str, REQUIRED, "point_data (or delay) path of the second scan variable, e.g. scan/photon_energy"),
    "edges": Field(Optional[list], None, "bin edges of the second variable"),
    "width": Field(Optional[float], None, "bin width of the second variable", check=positive),
    "origin": Field(float, 0.0, "a bin centre when binning by width"),
    "unique": Field(bool, False, "one bin per distinct value of the second variable"),
}


def validate_second_axis(section: Optional[Mapping[str, Any]], where: str) -> Optional[Dict[str, Any]]:
    """The validated ``cube.second`` mapping, or None."""
    if section is None:
        return None
    cfg = apply_schema(section, SECOND_AXIS_SCHEMA, where)
    if sum([cfg["edges"] is not None, cfg["width"] is not None, cfg["unique"]]) != 1:
        raise ConfigError(where, "give exactly one of edges, width or unique for the second axis")
    return cfg
