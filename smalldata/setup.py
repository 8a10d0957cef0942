"""Per-run set-up of each detector: its DetObject, its function trees, the modules to read."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .config import ProducerConfig
from .constants import DSSC_DEFAULT_QUAD_POSITIONS
from .detfunc import DetObjectFunc
from .errors import CalibrationError, ConfigError
from .frames import RawBatch
from .runaccess import RunAccess

log = logging.getLogger(__name__)


@dataclass
class DetectorSetup:
    """One detector of the run: calibration object, functions and modules read.

    Attributes
    ----------
    name : str
        Detector name (the output group).
    det : DetObject
        Calibration, masks and geometry.
    functions : list of DetObjectFunc
        Top-level function trees.
    modules : tuple of int
        Modules read for this detector.
    """

    name: str
    det: object
    functions: List[DetObjectFunc]
    modules: tuple

    def process(self, raw: RawBatch) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
        """Calibrate a batch and run the functions: ``{"<det>/<func>_<key>": array}`` and units."""
        if raw.modules != self.modules:
            cols = [raw.modules.index(m) for m in self.modules]
            raw = RawBatch(raw.train_ids, raw.pulse_ids, raw.cell_ids, raw.frame_index, self.modules,
                           raw.data[:, cols], raw.present[:, cols])
        frames = self.det.calibrate(raw)
        outputs, units = {}, {}
        for func in self.functions:
            for key, value in func.run(frames).items():
                outputs[f"{self.name}/{key}"] = value
            units.update({f"{self.name}/{k}": u for k, u in func.all_output_units().items()})
        return outputs, units

    def describe(self) -> Dict:
        """Constants, positions, masks and every function's parameters for ``UserDataCfg``."""
        description = dict(self.det.params())
        description.update(self.det.config_arrays())
        for func in self.functions:
            description[func.name] = _describe_function(func)
        return description


def _describe_function(func: DetObjectFunc) -> Dict:
    entry = {"type": f"{type(func).__module__}:{type(func).__qualname__}"}
    entry.update(func.params())
    entry.update(func.config_arrays())
    for child in func.children:
        entry[child.name] = _describe_function(child)
    return entry


def modules_for(functions: List[DetObjectFunc], configured, available: tuple) -> tuple:
    """Modules to read: the configured list, else what the functions need (None: all available)."""
    if configured:
        return tuple(sorted(configured))
    needed = set()
    for func in functions:
        mods = func.required_modules()
        if mods is None:
            return tuple(available)
        needed |= set(mods)
    return tuple(sorted(needed)) if needed else tuple(available)


def setup_detectors(config: ProducerConfig, proposal: int, access: RunAccess) -> List[DetectorSetup]:
    """Build every configured detector for this run (dark constants, geometry, functions)."""
    from .dark import check_cells_cover, find_dark_file
    from .detobject import DetObject

    setups = []
    for name, det_cfg in config.detectors.items():
        where = f"detectors.{name}"
        functions = config.functions(name)
        modules = modules_for(functions, det_cfg["modules"], access.available_modules())
        if not modules:
            raise ConfigError(where, f"no DSSC module of the run {access.path} to read")
        access.check_modules(modules)
        try:
            dark_path = find_dark_file(config.settings["calib_dir"], proposal, det_cfg["dark_run"], name)
        except CalibrationError as exc:
            raise ConfigError(f"{where}.dark_run", str(exc)) from None
        quads = det_cfg["quadrant_positions"] or DSSC_DEFAULT_QUAD_POSITIONS
        det = DetObject.from_dark_file(
            name, dark_path, modules=modules, gain=det_cfg["gain"], geometry_file=det_cfg["geometry_file"],
            quadrant_positions=quads, mask_asic_edges=det_cfg["mask_asic_edges"],
            user_mask=det_cfg["user_mask"], common_mode=det_cfg["common_mode"],
            common_mode_max_adu=det_cfg["common_mode_max"])
        present = [m for m in modules if access.module_frame_counts(m).any()]
        if present:
            check_cells_cover(det.cell_ids, np.unique(access.cell_ids(present[0])))
        for func in functions:
            func.setup(det)
        setups.append(DetectorSetup(name, det, functions, modules))
        log.info("detector %s: modules %s, %d function(s), dark run %d", name, list(modules),
                 len(functions), det_cfg["dark_run"])
    return setups
