"""Where each output dataset comes from, and names that would land on the same path.

The output's paths are made from config names: ``/<det>/<func>_<key>`` from a detector and
its functions, ``/<group>/<name>`` from point data, and the producer's own groups
(``/pulses``, ``/pattern``, ``/rejection``, ``/digitizer``). Two entries writing the same path would
silently replace one another, and a group named like the file's own (``meta``,
``UserDataCfg``) would break the file. Both are refused at set-up, with one line naming the two
entries: :func:`check_config_names` from the config alone, :func:`check_output_names` once the
functions' outputs are known (after their dry run).
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from smalldata.errors import ConfigError

#: top-level names the producer writes itself
RESERVED_TOP = ("UserDataCfg", "meta", "Sums", "trainId", "pulseId", "cellId")
#: names inside /UserDataCfg besides the detectors' groups
RESERVED_DESCRIPTIONS = ("point_data", "frames")
#: coordinates copied into every group of per-event data (smalldata.output.coords)
GROUP_COORDINATES = ("trainId", "pulseId")
#: top-level netCDF dimensions without values (smalldata.output.writer.attach_event_scale)
_DIMENSION = re.compile(r"dim\d+_\d+$")


def producer_paths(settings: Mapping) -> Dict[str, str]:
    """The per-event paths the producer writes itself for these top-level settings -> config key."""
    paths = {"rejection/reasons": "rejection (the producer's rejection/reasons)",
             "pattern/label_id": "pattern (the producer's pattern/label_id)",
             "pattern/is_dark": "pattern (the producer's pattern/is_dark)"}
    if settings.get("pulses") is not None:
        for name in ("slot", "aligned", "pulse_index", "xray_on", "laser_on"):
            paths[f"pulses/{name}"] = f"pulses (the producer's pulses/{name})"
    digitizer = settings.get("digitizer")
    if digitizer is not None:
        paths[f"digitizer/{digitizer['name']}"] = f"digitizer.name (the producer's digitizer/{digitizer['name']})"
    return paths


def _top_name_problem(name: str) -> Optional[str]:
    if name in RESERVED_TOP or _DIMENSION.match(name):
        return f"/{name} is part of every output file"
    return None


def check_config_names(detectors: Iterable[str], point_data: Iterable[Tuple[str, str]], settings: Mapping) -> None:
    """Refuse group and dataset names that the config alone shows to collide (see the module doc)."""
    for det in detectors:
        problem = _top_name_problem(det)
        if problem is None and det in RESERVED_DESCRIPTIONS:
            problem = f"/UserDataCfg/{det} describes the {det.replace('_', ' ')} of every output"
        if problem:
            raise ConfigError(f"detectors.{det}", f"a detector named {det!r} would collide: {problem}; rename it")
    own = producer_paths(settings)
    digitizer = settings.get("digitizer")
    if digitizer is not None and digitizer["name"] in GROUP_COORDINATES:
        raise ConfigError("digitizer.name", f"/digitizer/{digitizer['name']} is the coordinate every group of the "
                                            "output carries (a copy of /trainId or /pulseId); choose another name")
    for group, name in point_data:
        where = f"point_data.{group}.{name}"
        problem = _top_name_problem(group)
        if problem:
            raise ConfigError(f"point_data.{group}", f"a group named {group!r} would collide: {problem}; rename it")
        if name in GROUP_COORDINATES:
            raise ConfigError(where, f"/{group}/{name} is the coordinate every group of the output carries "
                                     "(a copy of /trainId or /pulseId); choose another name")
        if f"{group}/{name}" in own:
            raise ConfigError(where, f"/{group}/{name} is written by {own[f'{group}/{name}']} too; "
                                     "rename the point_data entry")


def check_output_names(point_data: Iterable[Tuple[str, str]], settings: Mapping,
                       functions: Mapping[str, Mapping[str, str]]) -> None:
    """Refuse two entries writing one output path, once every function's outputs are known.

    Parameters
    ----------
    point_data : iterable of (group, name)
    settings : mapping
        The config's top-level settings (``pulses``, ``digitizer``).
    functions : mapping
        Detector name -> {output key (``<func>_<key>``) -> config path of the function writing it}.
    """
    writers: Dict[str, List[str]] = {}
    for path, where in producer_paths(settings).items():
        writers.setdefault(path, []).append(where)
    for group, name in point_data:
        writers.setdefault(f"{group}/{name}", []).append(f"point_data.{group}.{name}")
    for det, outputs in functions.items():
        for key, where in outputs.items():
            writers.setdefault(f"{det}/{key}", []).append(f"{where} (output {key!r})")
    for path in sorted(writers):
        if len(writers[path]) > 1:
            first, second = writers[path][:2]
            raise ConfigError(_culprit(writers[path]), f"/{path} would be written by both {first} and {second}; "
                                                       "rename one of them")


def _culprit(wheres: List[str]) -> str:
    """The config path to name first: a point_data entry (the user's name), else the first writer."""
    for where in wheres:
        if where.startswith("point_data."):
            return where
    return wheres[0].split(" ", 1)[0]
