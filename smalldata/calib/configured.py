"""The DetObject of a configured detector: its dark constants file, whether it needs the dark
noise, and the object built for some modules and checked against the run's memory cells.

The producer's set-up (:mod:`smalldata.pipeline.detectors`) and the average image
(:mod:`smalldata.sums.average`) build their detectors this way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from smalldata.calib.dark import check_cells_cover, find_dark_file
from smalldata.calib.detobject import DetObject
from smalldata.cameras.dark import CameraDark, check_dark
from smalldata.cameras.reading import read_settings
from smalldata.detectors.camera import preset_of
from smalldata.detectors.registry import detector_type
from smalldata.config.producer import ProducerConfig
from smalldata.errors import CalibrationError, ConfigError
from smalldata.io.runaccess import RunAccess
from smalldata.plugin.detfunc import DetObjectFunc


def dark_path(config: ProducerConfig, name: str, proposal: int) -> Path:
    """The dark constants file of detector ``name`` (a one-line error naming ``dark_run`` if missing)."""
    try:
        return find_dark_file(config.settings["calib_dir"], proposal, config.detectors[name]["dark_run"], name)
    except CalibrationError as exc:
        raise ConfigError(f"detectors.{name}.dark_run", str(exc)) from None


def needs_noise(det_cfg: Mapping, functions: Sequence[DetObjectFunc] = ()) -> bool:
    """Whether calibration or ``functions`` need a detector's dark noise: common mode with its lit
    threshold from the noise, or a function (or child) whose ``needs_noise()`` says so."""
    def tree(func):
        return func.needs_noise() or any(tree(child) for child in func.children)

    return ((det_cfg.get("common_mode", "none") != "none" and det_cfg.get("common_mode_max") is None)
            or any(tree(func) for func in functions))


def build_camera_detobject(config: ProducerConfig, name: str, proposal: int, access: RunAccess) -> DetObject:
    """The DetObject of camera ``name``: its dark checked against the run's image shape and camera mode."""
    det_cfg = config.detectors[name]
    where = f"detectors.{name}"
    path = dark_path(config, name, proposal)
    preset = preset_of(det_cfg, where)
    try:
        dark = CameraDark.load(path)
    except (OSError, KeyError) as exc:
        raise CalibrationError(f"{path} is not a camera dark ({exc}); make it with 'smd_dark -p {proposal} "
                               f"-r {det_cfg['dark_run']} -c <config.yaml>' for {where}") from None
    settings = read_settings(access.data, preset, f"run {access.path}")
    check_dark(dark, preset.shape, settings, preset.name, f"{where}.dark_run ({path})")
    return DetObject.from_camera_dark(name, dark, detector_type(det_cfg, where), gain=det_cfg["gain"],
                                      user_mask=det_cfg["user_mask"],
                                      dark_file=str(path), dark_run=det_cfg["dark_run"])


def build_detobject(config: ProducerConfig, name: str, proposal: int, modules: tuple, access: RunAccess,
                    dark=None, noise: bool = True):
    """The DetObject of detector ``name`` for ``modules``, checked against the run's memory cells.

    ``dark``: its dark constants already in memory (e.g. shared by the node's ranks), else read here
    (without the noise if ``noise`` is False).
    """
    det_cfg = config.detectors[name]
    path = dark_path(config, name, proposal)
    try:
        det = DetObject.from_config(name, det_cfg, path if dark is None else dark, modules=modules,
                                    dark_file=str(path), noise=noise)
    except ConfigError as exc:
        if exc.path.startswith("detectors."):
            raise
        raise ConfigError(f"detectors.{name}.{exc.path.replace('geometry.file', 'geometry_file')}",
                          exc.message) from None
    present = [m for m in modules if access.module_frame_counts(m).any()]
    for module in present:  # every module's own cells: a module whose cells differ is calibrated with its own
        check_cells_cover(det.cell_ids, np.unique(access.cell_ids(module)), run_label=f"module {module} of "
                          f"{access.path}", dark_run=det_cfg["dark_run"])
    return det
