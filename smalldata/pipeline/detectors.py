"""Per-run set-up of each detector: its DetObject, its function trees, the modules to read."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from smalldata.calib.configured import build_detobject, dark_path, needs_noise
from smalldata.calib.darkref import dark_reference
from smalldata.config.producer import ProducerConfig
from smalldata.errors import ConfigError, SmallDataError
from smalldata.fused.detector import build_plan
from smalldata.io.runaccess import RunAccess
from smalldata.pipeline.chain import run_chain
from smalldata.plugin.contract import Layout, check_function, dry_run_batches, name_error
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, RawBatch
from smalldata.pulses.framestage import FrameInfo
from smalldata.pulses.patterns import FramePattern, subtract_intra_darks
from smalldata.sums.accumulate import DetectorAccumulators

log = logging.getLogger(__name__)


@dataclass
class DetectorSetup:
    """One detector of the run: calibration object, functions, vetoes, accumulators.

    Attributes
    ----------
    name : str
        Detector name (the output group).
    det : DetObject
        Calibration, masks and geometry.
    functions : list of DetObjectFunc
        Top-level function trees, run in order.
    modules : tuple of int
        Modules read for this detector.
    vetoes : list of dict
        ``{after, key, op, value}``: frames where the condition holds skip later functions.
    accumulators : DetectorAccumulators or None
        Cube and run sums.
    dark_subtraction : dict or None
        ``{pattern, mode, match_by}`` for intra-train dark subtraction.
    region : tuple or None
        ``(y0, y1, x0, x1)``: calibrate only this box of each module (see :func:`calibration_region`).
    plan : FusedPlan or None
        The fused hot path (:mod:`smalldata.fused`); None: the numpy path.
    layout : dict
        Output layout of the functions, learnt at set-up (see :mod:`smalldata.plugin.contract`);
        every batch is checked against it.
    embed_dark : bool
        Copy the dark pedestal and noise into ``UserDataCfg`` (else only the reference,
        :func:`smalldata.calib.darkref.dark_reference`).
    """

    name: str
    det: object
    functions: List[DetObjectFunc]
    modules: tuple
    vetoes: List[dict] = field(default_factory=list)
    accumulators: Optional[DetectorAccumulators] = None
    dark_subtraction: Optional[dict] = None
    region: Optional[tuple] = None
    plan: Optional[object] = None
    layout: Optional[Layout] = None
    embed_dark: bool = False

    def calibrate(self, raw: RawBatch, frame_index: np.ndarray) -> Frames:
        """Calibrated frames of this detector's modules, intra-darks subtracted if configured."""
        raw = raw.select_modules(self.modules)
        frames = self.det.calibrate(raw, region=self.region)
        if self.dark_subtraction is not None:
            data, valid = subtract_intra_darks(frames.data, frames.train_ids, frame_index, **self.dark_subtraction,
                                               valid=frames.valid)
            frames = replace(frames, data=data, valid=valid)
        return frames

    def process(self, raw: RawBatch, info: FrameInfo,
                points: Mapping[str, np.ndarray]) -> Tuple[Dict[str, object], Dict[str, str], np.ndarray]:
        """Calibrate, run the functions on the kept frames, accumulate.

        Returns ``{"<det>/<func>_<key>": array}``, their units, and the vetoed frames.
        """
        if self.plan is not None:
            out, vetoed = self._process_fused(raw, info, points)
        else:
            frames = self.calibrate(raw, raw.frame_index)
            out, vetoed = run_chain(self.functions, self.vetoes, frames, info.keep, self.layout)
            if self.accumulators is not None:
                self.accumulators.add(frames, info.label_id, points, info.keep & ~vetoed)
        outputs = {f"{self.name}/{key}": value for key, value in out.items()}
        units = {}
        for func in self.functions:
            units.update({f"{self.name}/{k}": u for k, u in func.all_output_units().items()})
        return outputs, units, vetoed

    def _process_fused(self, raw: RawBatch, info: FrameInfo,
                       points: Mapping[str, np.ndarray]) -> Tuple[Dict[str, object], np.ndarray]:
        """Calibrate and accumulate ``raw`` in the kernel, run the function chain on its results.

        Without vetoes the run sums and the cube ride along in the single pass (which frames
        they take is known before the functions run); with vetoes they are added in a second
        pass restricted to them, after the chain has decided which frames are vetoed.
        """
        acc = self.accumulators
        one_pass = acc is not None and not self.vetoes
        inputs = acc.fused_inputs(len(raw), info.label_id, points, info.keep) if one_pass else {}
        frames = self.plan.run(raw, **inputs)
        out, vetoed = run_chain(self.functions, self.vetoes, frames, info.keep, self.layout)
        if acc is not None and not one_pass:
            self.plan.run(raw, functions=False, **acc.fused_inputs(len(raw), info.label_id, points,
                                                                  info.keep & ~vetoed))
        return out, vetoed

    def describe(self) -> Dict:
        """Constants, positions, masks, every function's parameters, vetoes and sums for ``UserDataCfg``."""
        description = dict(self.det.params())
        arrays = self.det.config_arrays()
        for key in ("x", "y", "z"):  # float32 resolves 10 nm at 1 m: float64 adds nothing to 0.2 mm pixels
            arrays[key] = np.asarray(arrays[key], dtype=np.float32)
        reference = dark_reference(self.det)
        if not self.embed_dark:
            arrays.pop("pedestal")
            arrays.pop("noise", None)
        reference["embedded"] = self.embed_dark
        description.update(with_units(arrays, self.det.config_units()))
        description["dark"] = reference
        for func in self.functions:
            description[func.name] = _describe_function(func)
        if self.vetoes:
            description["vetoes"] = {str(i): dict(v) for i, v in enumerate(self.vetoes)}
        if self.accumulators is not None:
            description.update(self.accumulators.describe())
        return description


def with_units(arrays: Mapping[str, np.ndarray], units: Mapping[str, str]) -> Dict[str, object]:
    """Arrays paired with their unit as ``(array, unit)`` where one is known (for the writer)."""
    return {key: (value, units[key]) if units.get(key) else value for key, value in arrays.items()}


def _describe_function(func: DetObjectFunc) -> Dict:
    entry = {"type": f"{type(func).__module__}:{type(func).__qualname__}"}
    entry.update(func.params())
    entry.update(with_units(func.config_arrays(), func.config_units()))
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


def calibration_region(functions: List[DetObjectFunc], whole_modules_needed: bool) -> Optional[tuple]:
    """The union of the boxes the functions read, or None when any needs whole modules."""
    if whole_modules_needed or not functions:
        return None
    boxes = [func.required_region() for func in functions]
    if any(box is None for box in boxes):
        return None
    y0, y1, x0, x1 = np.array(boxes).T
    return int(y0.min()), int(y1.max()), int(x0.min()), int(x1.max())


def dark_requests(config: ProducerConfig, proposal: int,
                  access: RunAccess) -> Dict[str, Tuple[str, tuple, bool]]:
    """Per detector, its dark constants file, the modules :func:`setup_detectors` will read, and
    whether the noise is needed (:func:`needs_noise`, or the constants embedded in the output)."""
    requests = {}
    for name in config.per_pulse_detectors:
        det_cfg = config.detectors[name]
        functions = config.functions(name)
        requests[name] = (str(dark_path(config, name, proposal)),
                          modules_for(functions, det_cfg["modules"], access.available_modules()),
                          needs_noise(det_cfg, functions) or bool(det_cfg["embed_dark"]))
    return requests


def setup_detectors(config: ProducerConfig, proposal: int, access: RunAccess,
                    pattern: Optional[FramePattern] = None,
                    run_train_ids: Optional[np.ndarray] = None,
                    darks: Optional[Mapping[str, object]] = None) -> List[DetectorSetup]:
    """Build every configured detector for this run (dark constants, geometry, functions, sums).

    ``darks``: dark constants per detector already in memory (:func:`dark_requests` says which).
    """
    setups = []
    for name in config.per_pulse_detectors:
        det_cfg = config.detectors[name]
        where = f"detectors.{name}"
        functions = config.functions(name)
        modules = modules_for(functions, det_cfg["modules"], access.available_modules())
        if not modules:
            raise ConfigError(where, f"no DSSC module of the run {access.path} to read")
        access.check_modules(modules)
        det = build_detobject(config, name, proposal, modules, access, (darks or {}).get(name))
        for func in functions:
            try:
                func.setup(det)
            except SmallDataError as exc:
                raise name_error(func, exc) from None
        pattern = pattern or FramePattern(["image"])
        accumulators = None
        if det_cfg["cube"] is not None or det_cfg["sums"] is not None:
            accumulators = DetectorAccumulators(
                name, det_cfg["cube"], det_cfg["sums"], config.point_data, (len(modules),) + det.mask.shape[1:],
                det.units, pattern, access, access.train_ids if run_train_ids is None else run_train_ids)
        pattern_cfg = config.settings["pattern"] or {}
        dark_subtraction = None
        if pattern_cfg.get("subtract_dark", "none") != "none":
            dark_subtraction = {"pattern": pattern, "mode": pattern_cfg["subtract_dark"],
                                "match_by": pattern_cfg["match_by"]}
        region = calibration_region(functions, accumulators is not None or det_cfg["common_mode"] != "none")
        layout: Layout = {}
        batches = dry_run_batches(det, modules, region)
        for func in functions:
            layout.update(check_function(func, batches))
        plan = build_plan(det, functions, accumulators, dark_subtraction)
        setups.append(DetectorSetup(name, det, functions, modules, det_cfg["vetoes"], accumulators,
                                    dark_subtraction, region, plan, layout, det_cfg["embed_dark"]))
        log.info("detector %s: modules %s, %d function(s), dark run %d%s", name, list(modules),
                 len(functions), det_cfg["dark_run"], f", calibrating rows {region[0]}..{region[1]}, "
                 f"columns {region[2]}..{region[3]}" if region else "")
    return setups
