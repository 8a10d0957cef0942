"""Checks of the config against the run's data, at set-up, before any frame is processed.

The config schema checks every value on its own; these checks look at the data the
values point at: a per-pulse entry on a source with one value per train, an XGM
reference that is not an XGM, cube edges that hold none of the scan's values, a
function reading a module the run lacks, a dark whose own attributes or pedestals do
not fit this run, a detector whose every pixel is masked. Each failure is one line
naming the config path and the fix.
"""
from __future__ import annotations

import logging
from typing import List, Sequence

import numpy as np

from smalldata.calib.darkref import dark_medians
from smalldata.errors import CalibrationError, ConfigError
from smalldata.io.runaccess import RunAccess
from smalldata.output.names import check_output_names

log = logging.getLogger(__name__)

#: A dark fits the data when the lower quartile of raw - pedestal stays above -this many noise sigmas.
DARK_MISMATCH_SIGMAS = 2.0
#: Frames of the first train compared with the dark (half a million pixels per module).
DARK_CHECK_FRAMES = 8


def check_config_against_run(config, access: RunAccess, run_ids: np.ndarray) -> None:
    """Checks that need only the config and the run (before the detectors are set up)."""
    specs = config.point_data
    for (group, name), spec in specs.items():
        if spec["per"] == "pulse" and access.has_key(spec["source"], spec["key"]):
            if access.data[spec["source"], spec["key"]].entry_shape == ():
                raise ConfigError(f"point_data.{group}.{name}.per",
                                  f"'pulse', but {spec['source']} {spec['key']} has one value per train in run "
                                  f"{access.path}; use per: train")
    rejection = config.settings["rejection"] or {}
    refs = [("rejection.xgm", rejection.get("xgm"))] + [
        (f"detectors.{d}.cube.xgm", (cfg["cube"] or {}).get("xgm")) for d, cfg in config.detectors.items()]
    for where, path in refs:
        if path is None:
            continue
        spec = specs[tuple(path.split("/", 1))]
        if spec["per"] != "pulse" or "XGM" not in spec["source"].upper():
            raise ConfigError(where, f"{path!r} is {spec['source']} {spec['key']} (per {spec['per']}), not a pulse "
                                     "energy; point it at a per-pulse XGM entry of point_data, e.g. xgm/sa3_intensity")
    available = set(access.available_modules())
    for det, cfg in config.detectors.items():
        for i, func in enumerate(config.functions(det) if cfg["type"] == "dssc" else ()):
            needed = func.required_modules() or ()
            lacking = [m for m in needed if m not in available]
            unread = [m for m in needed if m in available and cfg["modules"] and m not in cfg["modules"]]
            if lacking or unread:
                why = (f"run {access.path} has no data for module(s) {lacking} (it has {sorted(available)})" if lacking
                       else f"detectors.{det}.modules does not list module(s) {unread}")
                raise ConfigError(f"detectors.{det}.functions[{i}]", f"function {func.name!r} reads module(s) "
                                  f"{list(needed)}, but {why}; choose a module the run has")
        cube = cfg["cube"] or {}
        if cube.get("scan") and cube.get("edges") and tuple(cube["scan"].split("/", 1)) in specs:  # not delay/*
            _check_edges(f"detectors.{det}.cube.edges", cube["edges"], cube["scan"],
                         specs[tuple(cube["scan"].split("/", 1))], access, run_ids)


def _check_edges(where: str, edges: Sequence[float], scan: str, spec, access: RunAccess, run_ids: np.ndarray) -> None:
    if not access.has_key(spec["source"], spec["key"]):
        return  # the point-data reader names the missing source
    values = access.train_values(spec["source"], spec["key"], run_ids)
    values = values.reshape(len(run_ids), -1)
    values = values[:, 0] if spec["per"] == "train" else values.reshape(-1)
    values = values[np.isfinite(values)]
    if len(values) and not np.any((values >= edges[0]) & (values <= edges[-1])):
        raise ConfigError(where, f"{edges[0]:g}..{edges[-1]:g} holds none of the values of {scan} in this run "
                                 f"({values.min():g}..{values.max():g}); set edges over that range")


def check_setups(config, setups: List, access: RunAccess, run_ids: np.ndarray, proposal: int) -> None:
    """Checks that need the set-up detectors: output names, the dark's identity, masks, the dark against the data."""
    check_output_names(config.point_data, config.settings,
                       {s.name: {key: func.config_path for key, (func, _) in (s.layout or {}).items()} for s in setups})
    available = set(access.available_modules())
    for s in setups:
        _check_dark_identity(s, config.detectors[s.name]["dark_run"], proposal)
        if s.det.type.kind != "dssc":  # a camera's dark was checked against the run's shape and mode
            if not np.asarray(s.det.mask).any():
                raise CalibrationError(f"detector {s.name}: every pixel is masked (dark run {s.det.dark_run}); "
                                       "take or choose another dark run and run smd_dark again")
            continue
        present = [j for j, m in enumerate(s.modules) if m in available]
        mask = np.asarray(s.det.mask)
        if present and not mask[present].any():
            raise CalibrationError(f"detector {s.name}: every pixel is masked (dark run {s.det.dark_run}: "
                                   f"{_bad_fraction(s.det):.0f}% bad pixels); the dark run looks broken (no signal, "
                                   "all zeros?): take or choose another dark run and run smd_dark again")
        _check_dark_fits(s, access, run_ids, present)


def _check_dark_identity(setup, dark_run: int, proposal: int) -> None:
    """The dark file's own attributes must name the run, proposal and detector it is filed under."""
    import h5py

    path = getattr(setup.det, "dark_file", None)
    if path is None:
        return
    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs.get(k) for k in ("run", "proposal", "detector")}
    claimed = {"run": dark_run, "proposal": proposal, "detector": setup.name}
    for key, value in claimed.items():
        stored = attrs[key].decode() if isinstance(attrs[key], bytes) else attrs[key]
        if stored is not None and str(stored) != str(value):
            raise CalibrationError(f"dark constants {path} say {key} {stored}, but are filed as {key} {value} "
                                   f"(detectors.{setup.name}.dark_run {dark_run}, proposal {proposal}); make the "
                                   "dark of that run with smd_dark instead of copying or renaming a file")


def _bad_fraction(det) -> float:
    status = np.asarray(det.status_mask)
    return 100.0 * np.count_nonzero(status) / max(status.size, 1)


def _check_dark_fits(setup, access: RunAccess, run_ids: np.ndarray, present: List[int]) -> None:
    """The pedestal must fit the data: on the first train, most pixels of a module see no photon.

    Its first :data:`DARK_CHECK_FRAMES` frames are compared, so the check costs the same
    whatever the frames per train.
    """
    counts = access.frame_counts(setup.modules)[: len(run_ids)]
    with_frames = np.flatnonzero(counts.min(axis=1) > 0)
    if not present or not len(with_frames):
        return
    raw = access.read_raw(setup.modules, run_ids[with_frames[:1]], window=(0, DARK_CHECK_FRAMES))
    det = setup.det
    cells = det.cell_index(raw.cell_ids if raw.module_cell_ids is None else raw.module_cell_ids[:, 0])
    pedestal = det.pedestal  # (M, C, rows, columns) ADU
    noise_median = dark_medians(det)[1]
    mask = np.asarray(det.mask)
    for j in present:
        data = raw.data[:, j]
        good = mask[j] & raw.present[:, j, None, None] & (data < det.type.saturation)
        if not good.any():
            continue
        offset = (data.astype(np.float32) - pedestal[j][cells])[good]
        sigma = float(noise_median[j])
        # photons only add: the lower quartile of raw - pedestal is -0.67 sigma with the right dark, whatever
        # the light; a dark of another detector or other settings spreads it by the pedestals' own spread
        low = -float(np.percentile(offset, 25))
        if sigma > 0 and low > DARK_MISMATCH_SIGMAS * sigma:
            raise CalibrationError(
                f"detector {setup.name}: dark run {det.dark_run} does not fit module {setup.modules[j]} of run "
                f"{access.path}: a quarter of its pixels read {low:.1f} ADU or more below their pedestal "
                f"({low / sigma:.1f} times the noise, 0.7 expected); use a dark run of this detector and "
                f"settings (detectors.{setup.name}.dark_run)")
