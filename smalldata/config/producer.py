"""The producer's YAML config: loading and validation before any data is read.

The keys are declared in :mod:`smalldata.config.keys` (type, default, unit, meaning),
which also generates ``docs/config.md`` (``python -m smalldata.config.producer``).
Relative paths resolve against the config file's directory.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List

from smalldata.config.dark import DarkThresholds
from smalldata.config.functions import build_functions
from smalldata.detectors.camera import preset_of
from smalldata.detectors.registry import detector_type, type_kind
from smalldata.config.keys import (
    CAMERA_DARK_SCHEMA,
    CAMERA_SCHEMA,
    CUBE_SCHEMA,
    DETECTOR_SCHEMA,
    DIGITIZER_SCHEMA,
    PATTERN_SCHEMA,
    POINT_SCHEMA,
    PULSES_SCHEMA,
    REJECTION_SCHEMA,
    SUMS_SCHEMA,
    TOP_SCHEMA,
    VETO_SCHEMA,
    config_markdown,
)
from smalldata.config.names import check_name
from smalldata.config.schema import apply_schema, did_you_mean
from smalldata.config.secondaxis import validate_second_axis
from smalldata.config.yamlfile import load_yaml, resolve_path
from smalldata.errors import ConfigError
from smalldata.output.names import check_config_names
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.config.delay import delay_paths, validate_delay

log = logging.getLogger(__name__)


def log_veto_last(where: str, index: int) -> None:
    """A veto after the last function skips nothing but still flags frames."""
    log.info("%s[%d]: no function follows; vetoed frames are only flagged and left out of cubes", where, index)


def check_file(path: str, where: str) -> None:
    """A config key naming a file: refuse a folder or a missing file, saying which."""
    if Path(path).is_dir():
        raise ConfigError(where, f"{path} is a directory; give the file inside it")
    if not Path(path).is_file():
        raise ConfigError(where, f"file {path} does not exist")


class ProducerConfig:
    """A validated producer config.

    Attributes
    ----------
    path : Path
        The config file.
    text : str
        Its YAML text (stored in the output's /meta).
    settings : dict
        Top-level settings with defaults filled in and paths resolved.
    detectors : dict
        Detector name -> validated detector settings.
    point_data : dict
        ``(group, name)`` -> validated point spec.
    """

    def __init__(self, raw: Dict[str, Any], path: Path, text: str = ""):
        self.path = Path(path)
        self.text = text
        base = self.path.parent
        self.settings = apply_schema(raw, TOP_SCHEMA, "")
        for key in ("data_root", "calib_dir", "output_dir"):
            if self.settings[key] is not None:
                self.settings[key] = str(resolve_path(base, self.settings[key], key))
        self.detectors: Dict[str, Dict[str, Any]] = {}
        if not self.settings["detectors"]:
            raise ConfigError("detectors", "no detector configured; add e.g. 'dssc: {dark_run: 615, functions: [...]}'")
        for name, det_raw in self.settings["detectors"].items():
            where = f"detectors.{name}"
            check_name(name, where)
            kind = type_kind(det_raw.get("type") if isinstance(det_raw, dict) else None, where)
            if kind == "camera":
                det = self._camera(det_raw, base, where)
            else:
                det = apply_schema(det_raw, DETECTOR_SCHEMA, where)
                det["type"] = kind
            for key in ("user_mask", "geometry_file"):
                if det.get(key) is not None:
                    det[key] = str(resolve_path(base, det[key], f"{where}.{key}"))
                    check_file(det[key], f"{where}.{key}")
            if not isinstance(det["functions"], list):
                raise ConfigError(f"{where}.functions", "expected a list of functions")
            funcs = build_functions(det["functions"], f"{where}.functions", detector_type(det, where))  # validate now
            det["vetoes"] = self._vetoes(det["vetoes"], [f.name for f in funcs], f"{where}.vetoes")
            if kind == "dssc":  # smd_dark reads these; check them here too
                DarkThresholds.from_mapping(det["dark"], f"{where}.dark")
            for key, schema in (("cube", CUBE_SCHEMA), ("sums", SUMS_SCHEMA)):
                if det[key] is not None:
                    det[key] = apply_schema(det[key], schema, f"{where}.{key}")
            if det["cube"] is not None and sum([det["cube"]["edges"] is not None, det["cube"]["width"] is not None,
                                                det["cube"]["unique"]]) > 1:
                raise ConfigError(f"{where}.cube", "give only one of edges, width or unique")
            if det["cube"] is not None:
                det["cube"]["second"] = validate_second_axis(det["cube"]["second"], f"{where}.cube.second")
            self.detectors[name] = det
        self.point_data: Dict[tuple, Dict[str, Any]] = {}
        for group, entries in (self.settings["point_data"] or {}).items():
            if not str(group).isidentifier() or not isinstance(entries, dict):
                raise ConfigError(f"point_data.{group}", "expected group: {name: {source: ..., key: ...}}")
            for name, spec in entries.items():
                if not str(name).isidentifier():
                    raise ConfigError(f"point_data.{group}.{name}", "names must be identifiers")
                self.point_data[(group, name)] = apply_schema(spec, POINT_SCHEMA, f"point_data.{group}.{name}")
        for key, schema in (("pulses", PULSES_SCHEMA), ("digitizer", DIGITIZER_SCHEMA), ("pattern", PATTERN_SCHEMA),
                            ("rejection", REJECTION_SCHEMA)):
            if self.settings[key] is not None:
                self.settings[key] = apply_schema(self.settings[key], schema, key)
        if self.settings["digitizer"] is not None and self.settings["pulses"] is None:
            raise ConfigError("digitizer", "digitizer integrals need the bunch pattern: add a 'pulses' section")
        self.settings["delay"] = validate_delay(self.settings["delay"], self.settings["pulses"])
        rejection = self.settings["rejection"] or {}
        if rejection.get("user_mask"):
            rejection["user_mask"] = str(resolve_path(base, rejection["user_mask"], "rejection.user_mask"))
            check_file(rejection["user_mask"], "rejection.user_mask")
        if self.settings["digitizer"] is not None:
            check_name(self.settings["digitizer"]["name"], "digitizer.name")
        check_config_names(self.detectors, self.point_data, self.settings)
        if self.settings["delay"] is not None and any(group == "delay" for group, _ in self.point_data):
            raise ConfigError("point_data.delay", "the delay section writes the output group /delay; "
                                                  "rename this point_data group")
        point_paths = {f"{g}/{n}" for g, n in self.point_data} | delay_paths(self.settings["delay"])
        for where, path in [("rejection.xgm", rejection.get("xgm"))] + [
                (f"detectors.{d}.cube.{k}", (cfg["cube"] or {}).get(k)) for d, cfg in self.detectors.items()
                for k in ("scan", "xgm")] + [
                (f"detectors.{d}.cube.second.scan", ((cfg["cube"] or {}).get("second") or {}).get("scan"))
                for d, cfg in self.detectors.items()]:
            if path is not None and path not in point_paths:
                raise ConfigError(where, f"{path!r} is not a point_data entry{did_you_mean(path, point_paths)}; "
                                         f"use one of {sorted(point_paths) or 'none (add point_data)'}")

    @staticmethod
    def _camera(det_raw: Dict[str, Any], base: Path, where: str) -> Dict[str, Any]:
        """A validated camera entry: its preset known, its dark thresholds checked."""
        det = apply_schema(det_raw, CAMERA_SCHEMA, where)
        preset_of(det, where)  # an unknown camera is named here
        det["dark"] = apply_schema(det["dark"], CAMERA_DARK_SCHEMA, f"{where}.dark")
        return det

    @property
    def per_pulse_detectors(self) -> List[str]:
        """Names of the detectors with frames per pulse (their rows are the top level's)."""
        return [name for name, det in self.detectors.items() if det["type"] == "dssc"]

    @property
    def per_train_detectors(self) -> List[str]:
        """Names of the per-train detectors (cameras; each has its own rows)."""
        return [name for name, det in self.detectors.items() if det["type"] == "camera"]

    @staticmethod
    def _vetoes(vetoes, function_names, where) -> List[Dict[str, Any]]:
        if not isinstance(vetoes, list):
            raise ConfigError(where, "expected a list of {after, key, op, value}")
        result = []
        for i, veto in enumerate(vetoes):
            veto = apply_schema(veto, VETO_SCHEMA, f"{where}[{i}]")
            if veto["after"] not in function_names:
                raise ConfigError(f"{where}[{i}].after", f"no top-level function named {veto['after']!r}"
                                                         f"{did_you_mean(veto['after'], function_names)}")
            if function_names.index(veto["after"]) == len(function_names) - 1:
                log_veto_last(where, i)
            result.append(veto)
        return result


    @classmethod
    def from_file(cls, path: os.PathLike) -> "ProducerConfig":
        """Load and validate ``path``."""
        path = Path(path).resolve()
        raw = load_yaml(path)
        return cls(raw, path, path.read_text())

    @property
    def proposal(self) -> int:
        """The proposal number of the config."""
        return self.settings["proposal"]

    def functions(self, detector: str) -> List[DetObjectFunc]:
        """Fresh function trees of ``detector`` (new objects on every call)."""
        det = self.detectors[detector]
        return build_functions(det["functions"], f"detectors.{detector}.functions",
                               detector_type(det, f"detectors.{detector}"))


if __name__ == "__main__":  # pragma: no cover - docs generator
    print(config_markdown())
