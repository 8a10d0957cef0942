"""Per-train detectors (cameras) in the event loop: their set-up, and their rows batch by batch.

A camera has one image per train, so its rows are not the per-pulse rows of the top level: each
camera writes its own group, ``/<cam>/trainId`` and ``/<cam>/<func>_<key>``, one row per train
with an image. A run without a per-pulse detector has one top-level row per train that has an
image of any camera (pulse and cell 0), with the point data per train
(:meth:`~smalldata.io.pointdata.PointReader.read_trains`). The cameras' calibration, functions,
vetoes and run sums are those of every detector (:class:`~smalldata.pipeline.detectors.DetectorSetup`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from smalldata.calib.configured import build_camera_detobject
from smalldata.io.cameratrains import CameraTrains
from smalldata.config.producer import ProducerConfig
from smalldata.detectors.registry import detector_type
from smalldata.errors import ConfigError, SmallDataError
from smalldata.io.pointdata import PointReader
from smalldata.io.runaccess import RunAccess
from smalldata.pipeline.detectors import DetectorSetup
from smalldata.plugin.contract import check_function, dry_run_batches, name_error
from smalldata.pulses.framestage import FrameInfo
from smalldata.pulses.patterns import FramePattern
from smalldata.pulses.rejection import Veto, evaluate_veto
from smalldata.sums.accumulate import DetectorAccumulators
from smalldata.sums.rowcube import write_row_cube

log = logging.getLogger(__name__)

#: config sections that describe pulses: they need a per-pulse detector
PULSE_SECTIONS = ("pulses", "digitizer", "pattern", "rejection", "delay")


@dataclass
class CameraStream:
    """One per-train detector: its set-up and its images."""

    setup: DetectorSetup
    trains: CameraTrains

    @property
    def name(self) -> str:
        """The detector's name (its output group)."""
        return self.setup.name


def setup_cameras(config: ProducerConfig, proposal: int, access: RunAccess,
                  run_train_ids: np.ndarray) -> List[CameraStream]:
    """Set up every per-train detector of the config for this run (dark, functions, sums)."""
    if not config.per_pulse_detectors:
        used = [key for key in PULSE_SECTIONS if config.settings[key] is not None]
        if used:
            raise ConfigError(used[0], f"the {used[0]!r} section describes pulses, but every detector of the config "
                                       "has one image per train; remove the section or add the DSSC")
    streams = []
    for name in config.per_train_detectors:
        det_cfg, where = config.detectors[name], f"detectors.{name}"
        trains = CameraTrains(access.data, detector_type(det_cfg, where), name, str(access.path))
        det = build_camera_detobject(config, name, proposal, access)
        functions = config.functions(name)
        for func in functions:
            try:
                func.setup(det)
            except SmallDataError as exc:
                raise name_error(func, exc) from None
        accumulators = None  # a camera's cube bins its per-train outputs (write_camera_cubes), not images
        if det_cfg["sums"] is not None:
            accumulators = DetectorAccumulators(name, None, det_cfg["sums"], config.point_data, det.mask.shape,
                                                det.units, FramePattern(["image"]), access, run_train_ids)
        layout: Dict = {}
        batches = dry_run_batches(det, det.modules, None)
        for func in functions:
            layout.update(check_function(func, batches))
        unknown = [k for k in (det_cfg["cube"] or {}).get("keys") or () if k not in layout]
        if unknown:  # said now, not after the run
            raise ConfigError(f"{where}.cube.keys", f"no per-train output {unknown[0]!r}; choose among "
                                                    f"{sorted(layout)}")
        setup = DetectorSetup(name, det, functions, det.modules, det_cfg["vetoes"], accumulators, layout=layout,
                              embed_dark=det_cfg["embed_dark"])
        streams.append(CameraStream(setup, trains))
        log.info("detector %s: %s camera %s, %d train(s) with an image, %d function(s), dark run %d", name,
                 det.type.name, det.type.source(), len(trains.train_ids), len(functions), det_cfg["dark_run"])
    return streams


def camera_train_ids(streams: Sequence[CameraStream], run_train_ids: np.ndarray) -> np.ndarray:
    """(T,) uint64 trains of the run that have an image of any camera, ascending."""
    ids = [s.trains.train_ids for s in streams]
    union = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.uint64)
    return union[np.isin(union, run_train_ids)].astype(np.uint64)


def _per_train_info(n: int) -> FrameInfo:
    """Every image an X-ray frame of the single label ``image``, nothing rejected."""
    zeros = np.zeros(n, np.int64)
    return FrameInfo(pulse_index=zeros, xray_on=np.ones(n, bool), laser_on=np.zeros(n, bool), label_id=zeros,
                     is_dark=np.zeros(n, bool), digitizer=None, reasons=np.zeros(n, np.uint16))


class TrainRows:
    """Writes this rank's per-train rows, in train order, batch by batch.

    Parameters
    ----------
    streams : list of CameraStream
    points : PointReader
        Point data (per train here).
    events : bool
        Also write the top-level rows (a run without per-pulse detectors).
    batch_megabytes : float
        Raw images per batch.
    """

    def __init__(self, streams: Sequence[CameraStream], points: PointReader, events: bool, batch_megabytes: float):
        self.streams, self.points, self.events = list(streams), points, events
        self.batch_trains = min([s.trains.batch_trains(batch_megabytes) for s in self.streams] or [1])
        #: (camera, output key) -> {train id: value} of the outputs other detectors' vetoes read
        self.kept: Dict[Tuple[str, str], Dict[int, float]] = {}

    def keep_values(self, camera: str, key: str, where: str) -> Dict[int, float]:
        """Keep ``camera``'s output ``key`` of every train processed (for :class:`TrainVetoes`);
        ``where`` names the veto in a one-line error."""
        stream = next((s for s in self.streams if s.name == camera), None)
        if stream is None:
            raise ConfigError(f"{where}.detector", f"{camera!r} is not a per-train detector of this config")
        layout = stream.setup.layout or {}
        scalar = key in layout and layout[key][1][0] != "ragged" and layout[key][1][1] == ()  # (dtype, shape)
        if not scalar:
            raise ConfigError(f"{where}.key", f"{camera} has no per-train scalar output {key!r}; use one of "
                                              f"{sorted(layout)}")
        return self.kept.setdefault((camera, key), {})

    def process(self, train_ids: np.ndarray, write) -> int:
        """Process the trains ``train_ids`` (ascending); ``write(outputs, units, rows)`` appends rows.

        Returns the number of camera images processed.
        """
        images = 0
        for start in range(0, len(train_ids), self.batch_trains):
            images += self._batch(np.asarray(train_ids[start:start + self.batch_trains], np.uint64), write)
        return images

    def _batch(self, train_ids: np.ndarray, write) -> int:
        # point data per train: the top-level rows of a camera-only run (a camera's sums need none,
        # its cube reads its scan variable once, from the merged rows)
        points, point_units = self.points.read_trains(train_ids) if self.events else ({}, {})
        if self.events:
            n = len(train_ids)
            outputs = {"trainId": train_ids, "pulseId": np.zeros(n, np.uint64), "cellId": np.zeros(n, np.uint16),
                       **points, "rejection/reasons": np.zeros(n, np.uint16)}
            write(outputs, point_units, "events")
        images = 0
        for stream in self.streams:
            have = np.isin(train_ids, stream.trains.train_ids)
            if not have.any():
                continue
            ids = train_ids[have]
            raw = stream.trains.read(ids)
            out, units, vetoed = stream.setup.process(raw, _per_train_info(len(ids)), {})
            for (camera, key), values in self.kept.items():
                if camera == stream.name:
                    values.update(zip(ids.tolist(), np.asarray(out[f"{camera}/{key}"], np.float64).tolist()))
            rows = {f"{stream.name}/trainId": ids, **out}
            if stream.setup.vetoes:
                rows[f"{stream.name}/vetoed"] = vetoed
            write(rows, units, stream.name)
            images += len(ids)
        return images


def write_camera_cubes(out, streams: Sequence[CameraStream], config: ProducerConfig, points: PointReader) -> None:
    """``/Sums/<cam>_cube`` of every camera with a ``cube``: its merged rows binned by the scan variable."""
    for stream in streams:
        cube_cfg = config.detectors[stream.name]["cube"]
        if cube_cfg is None or stream.name not in out:
            continue
        ids = out[stream.name]["trainId"][()]
        values, units = points.read_trains(ids)
        write_row_cube(out, stream.name, cube_cfg, values[cube_cfg["scan"]], units.get(cube_cfg["scan"], ""))


class TrainVetoes:
    """The frames of a per-pulse detector that cameras' per-train results veto.

    A frame is vetoed when, for its train, a condition ``output op value`` on a camera's output
    holds, or the camera has no image of the train (no result: the frame cannot be judged).

    Parameters
    ----------
    conditions : list of (dict, dict)
        ``(veto spec, {train id: value})`` pairs, the values kept by :meth:`TrainRows.keep_values`.
    """

    def __init__(self, conditions):
        self.conditions = list(conditions)

    def __call__(self, train_ids: np.ndarray) -> np.ndarray:
        vetoed = np.zeros(len(train_ids), bool)
        trains, index = np.unique(np.asarray(train_ids), return_inverse=True)
        for spec, values in self.conditions:
            per_train = np.array([values.get(int(t), np.nan) for t in trains], np.float64)
            hit = evaluate_veto({spec["key"]: per_train}, Veto(spec["key"], spec["op"], spec["value"]))
            vetoed |= (hit | np.isnan(per_train))[index]
        return vetoed


def attach_train_vetoes(config: ProducerConfig, setups: Sequence[DetectorSetup], train_rows: TrainRows) -> None:
    """Give each per-pulse detector the vetoes its config lets cameras decide."""
    for setup in setups:
        vetoes = config.detectors[setup.name]["vetoes"]
        conditions = [(v, train_rows.keep_values(v["detector"], v["key"], f"detectors.{setup.name}.vetoes[{i}]"))
                      for i, v in enumerate(vetoes) if v.get("detector")]
        if conditions:
            setup.train_vetoes = TrainVetoes(conditions)
