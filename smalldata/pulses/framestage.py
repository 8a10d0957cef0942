"""Per-frame facts of a batch before any detector function runs.

:class:`FrameStage` combines the run-level building blocks for the event loop: the bunch
pattern (X-rays and pump laser per frame, the frame's SASE3 pulse), the frame pattern
labels, digitizer pulse integrals, and the frame rejection reasons. It yields per-event
outputs (``/pulses/*``, ``/pattern/*``, ``/digitizer/*``, ``/rejection/*``) and the
:class:`FrameInfo` that point data, detectors and cubes use.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.plugin.frames import RawBatch
from smalldata.pulses.laser import ANCHOR_KEYS, LaserAnchor, LaserAnchorError
from smalldata.pulses.patterns import FramePattern

log = logging.getLogger(__name__)


class TrainSource(Protocol):
    """What the frame stage reads from the open run (:class:`smalldata.io.runaccess.RunAccess` is one):
    per-train values of a source's key, and the frames of each train."""

    path: object
    train_ids: np.ndarray
    block_trains: int

    def has_key(self, source: str, key: str) -> bool:
        """Whether the run records ``key`` of ``source``."""

    def train_values(self, source: str, key: str, train_ids: np.ndarray) -> np.ndarray:
        """The values of ``key`` of ``source`` for ``train_ids``, one row per train."""

    def frames_per_train(self, modules: Sequence[int]) -> np.ndarray:
        """(T,) frames per train of the run: the most any of ``modules`` has."""

#: Labels of ``pattern.from_pulses`` (label ids 0, 1, 2).
PULSE_LABELS = ("pumped", "unpumped", "dark")


@dataclass
class FrameInfo:
    """What is known about each frame of a batch (all arrays (N,)).

    Attributes
    ----------
    pulse_index : int64, index of the frame's SASE3 pulse in its train, -1 without X-rays
    xray_on, laser_on : bool
    label_id : int, index into the pattern's unique labels
    is_dark : bool, the frame's label is a dark label
    digitizer : float64 or None, the frame's pulse integral
    reasons : uint16, rejection reason bits (0 = keep), filled in by :meth:`FrameStage.reject`
    train_pulses : int64 (T,) or None, SASE pulses of each of the batch's trains (``np.unique`` of
        its train ids; 0 without a bunch pattern), None without a ``pulses`` section
    """

    pulse_index: np.ndarray
    xray_on: np.ndarray
    laser_on: np.ndarray
    label_id: np.ndarray
    is_dark: np.ndarray
    digitizer: Optional[np.ndarray]
    reasons: np.ndarray
    train_pulses: Optional[np.ndarray] = None

    @property
    def keep(self) -> np.ndarray:
        """Frames not rejected."""
        return self.reasons == 0


class FrameStage:
    """Pulses, pattern, digitizer and rejection for the frames of each batch.

    Parameters
    ----------
    pulses : mapping or None
        Validated ``pulses`` config (bunch pattern source, slots); None: every frame is
        taken as an X-ray frame whose pulse index is its position in the train.
    digitizer : mapping or None
        Validated ``digitizer`` config (needs ``pulses``).
    pattern : mapping or None
        Validated ``pattern`` config; None: one label, ``"image"``.
    rejection : mapping or None
        Validated ``rejection`` config.
    access : TrainSource
        The open run (a :class:`~smalldata.io.runaccess.RunAccess`).
    run_train_ids : ndarray
        All train ids of the run (for a user frame mask given per run).
    """

    def __init__(self, pulses: Optional[Mapping[str, Any]], digitizer: Optional[Mapping[str, Any]],
                 pattern: Optional[Mapping[str, Any]], rejection: Optional[Mapping[str, Any]],
                 access: TrainSource, run_train_ids: np.ndarray):
        from smalldata.pulses.digitizer import PulseIntegration
        from smalldata.pulses.rejection import FrameRejection

        self.pulses = dict(pulses) if pulses else None
        self.digitizer = dict(digitizer) if digitizer else None
        self.pattern_cfg = dict(pattern) if pattern else {"labels": ["image"], "subtract_dark": "none",
                                                          "match_by": "next", "from_pulses": False}
        self.from_pulses = bool(self.pattern_cfg.get("from_pulses", False))
        self.rejection_cfg = dict(rejection) if rejection else {}
        self.access = access
        if self.digitizer and not self.pulses:
            raise ConfigError("digitizer", "digitizer integrals need the bunch pattern: add a 'pulses' section")
        if self.from_pulses and not self.pulses:
            raise ConfigError("pattern.from_pulses", "labels from the bunch pattern need a 'pulses' section")
        if self.from_pulses and self.pattern_cfg["subtract_dark"] != "none":
            raise ConfigError("pattern.subtract_dark", "intra-dark subtraction pairs frames by pattern position; "
                                                       "use from_pulses: false or subtract_dark: none")
        try:
            self.pattern = FramePattern(PULSE_LABELS if self.from_pulses else self.pattern_cfg["labels"])
        except ConfigError as exc:
            raise ConfigError(f"pattern.{exc.path}", exc.message) from None
        if self.pattern_cfg["subtract_dark"] != "none" and not self.pattern.dark_labels:
            raise ConfigError("pattern.subtract_dark", f"the pattern {self.pattern_cfg['labels']} has no dark label "
                                                       "(a label containing 'dark'); add one or use 'none'")
        self.laser_anchor = None
        self.run_train_ids = np.asarray(run_train_ids, dtype=np.uint64)
        if self.pulses:
            self._require(self.pulses["source"], self.pulses["key"], "pulses")
            anchors = {k[len("laser_"):]: self.pulses.get(k) for k in ANCHOR_KEYS}
            if any(v is not None for v in anchors.values()):
                self.laser_anchor = LaserAnchor(**anchors)
            else:
                self._refuse_unanchored_laser()
        self.integration = None
        if self.digitizer:
            self._require(self.digitizer["source"], self.digitizer["key"], "digitizer")
            try:
                self.integration = PulseIntegration(
                    first_slot=self.digitizer["first_slot"], first_sample=self.digitizer["first_sample"],
                    samples_per_slot=self.digitizer["samples_per_slot"],
                    baseline_window=self.digitizer["baseline_window"], peak_window=self.digitizer["peak_window"])
            except ConfigError as exc:
                raise ConfigError(f"digitizer.{exc.path}", exc.message) from None
        rej = {k: v for k, v in self.rejection_cfg.items() if k != "xgm"}
        try:
            self.rejection = FrameRejection(**rej, run_train_ids=run_train_ids)
        except ConfigError as exc:
            raise ConfigError(f"rejection.{exc.path}", exc.message) from None
        self.xgm_path = self.rejection_cfg.get("xgm")

    def _require(self, source: str, key: str, section: str) -> None:
        if not self.access.has_key(source, key):
            raise DataError(f"config {section}: run {self.access.path} has no {source!r} / {key!r}; "
                            f"fix {section}.source and {section}.key or remove the section")

    def _rows(self, train_ids: np.ndarray) -> np.ndarray:
        """Bunch-pattern rows of ``train_ids`` (zeros where a train has none) and whether each has one."""
        rows = self.access.train_values(self.pulses["source"], self.pulses["key"], train_ids)
        have = np.all(np.isfinite(rows), axis=1)
        return np.where(np.isfinite(rows), rows, 0).astype(np.uint32), have

    def _refuse_unanchored_laser(self) -> None:
        """Without an anchor, refuse a run whose first trains' bunch pattern has pump-laser bits."""
        from smalldata.pulses.bunchpattern import decode_bunch_pattern

        head = self.run_train_ids[:self.access.block_trains]
        rows, _ = self._rows(head)
        _, bits = decode_bunch_pattern(rows, sase=self.pulses["sase"], laser=self.pulses["laser"])
        if bits.any():
            tid = int(head[np.flatnonzero(bits.any(axis=1))[0]])
            raise LaserAnchorError(f"run {self.access.path}: train {tid} has {self.pulses['laser']} pump-laser bits "
                                   "but the laser's timing is not anchored; set one of pulses."
                                   + ", pulses.".join(ANCHOR_KEYS) + " (see docs/pulses.md)")

    def _previous_laser_slot(self, train_id: int) -> int:
        """First laser slot of the last train before ``train_id`` whose X-ray pulses anchor the laser (-1: none)."""
        from smalldata.pulses.bunchpattern import decode_bunch_pattern

        pos = int(np.searchsorted(self.run_train_ids, train_id))
        while pos > 0:
            lo = max(0, pos - 64)
            rows, have = self._rows(self.run_train_ids[lo:pos])
            xray, _ = decode_bunch_pattern(rows, sase=self.pulses["sase"], laser=self.pulses["laser"])
            first = np.where(have, self.laser_anchor.first_slots(xray), -1)
            if np.any(first >= 0):
                return int(first[first >= 0][-1])
            pos = lo
        return -1

    # ------------------------------------------------------------------ per batch
    def frame_info(self, raw: RawBatch) -> Tuple[FrameInfo, Dict[str, np.ndarray], Dict[str, str]]:
        """Pulse, pattern and digitizer information of a batch, and its per-event outputs."""
        from smalldata.pulses.bunchpattern import align_frames, align_per_pulse, sase_pulse_slots

        n = len(raw)
        trains, train_of_frame = np.unique(raw.train_ids, return_inverse=True)
        outputs: Dict[str, np.ndarray] = {}
        units: Dict[str, str] = {}
        digitizer = train_pulses = None
        if self.pulses:
            rows, have = self._rows(trains)
            slots, n_pulses = sase_pulse_slots(rows, sase=self.pulses["sase"])
            train_pulses = np.where(have, n_pulses, 0).astype(np.int64)
            tof = np.where(have[train_of_frame], train_of_frame, -1)
            whole = None  # an inferred slot spacing needs each train's frame count, also of a piece of the train
            if self.pulses["slot_spacing"] is None:
                whole = self.access.frames_per_train(raw.modules)[np.searchsorted(self.access.train_ids, trains)]
            align = dict(sase=self.pulses["sase"], laser=self.pulses["laser"], laser_anchor=self.laser_anchor,
                         train_ids=trains, frames_in_train=whole)
            try:
                info = align_frames(rows, tof, raw.frame_index, self.pulses["first_slot"],
                                    self.pulses["slot_spacing"], **align)
            except LaserAnchorError:
                if self.laser_anchor is None:
                    raise
                # the batch starts with trains its anchor cannot place: extrapolate from earlier trains
                info = align_frames(rows, tof, raw.frame_index, self.pulses["first_slot"],
                                    self.pulses["slot_spacing"], previous_laser_slot=self._previous_laser_slot(
                                        int(trains[0])), **align)
            pulse_index, xray_on, laser_on = info["pulse_index"], info["xray_on"], info["laser_on"]
            outputs.update({"pulses/slot": info["slot"], "pulses/aligned": info["aligned"]})
            if self.integration is not None:
                traces = self.access.train_values(self.digitizer["source"], self.digitizer["key"], trains)
                integrals = self.integration(np.nan_to_num(traces), slots)
                digitizer = align_per_pulse(integrals, pulse_index, tof, n_valid=n_pulses).astype(np.float64)
                outputs[f"digitizer/{self.digitizer['name']}"] = digitizer
                units[f"digitizer/{self.digitizer['name']}"] = self.digitizer["units"]
        else:
            pulse_index = raw.frame_index.astype(np.int64)
            xray_on = np.ones(n, dtype=bool)
            laser_on = np.zeros(n, dtype=bool)
        if self.from_pulses:
            label_id = np.where(xray_on, np.where(laser_on, 0, 1), 2).astype(np.int64)
            is_dark = ~xray_on
        else:
            label_id = self.pattern.label_ids(raw.frame_index)
            is_dark = self.pattern.is_dark(raw.frame_index)
        if self.pulses:
            outputs.update({"pulses/pulse_index": pulse_index, "pulses/xray_on": xray_on, "pulses/laser_on": laser_on})
        outputs["pattern/label_id"] = label_id.astype(np.int16)
        outputs["pattern/is_dark"] = is_dark
        frame_info = FrameInfo(pulse_index=pulse_index, xray_on=xray_on, laser_on=laser_on, label_id=label_id,
                               is_dark=is_dark, digitizer=digitizer, reasons=np.zeros(n, dtype=np.uint16),
                               train_pulses=train_pulses)
        return frame_info, outputs, units

    def reject(self, raw: RawBatch, info: FrameInfo, points: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Fill ``info.reasons`` (max frames, XGM, digitizer, user mask, dark) and return its outputs."""
        xgm = None
        if self.xgm_path is not None:
            if self.xgm_path not in points:
                raise ConfigError("rejection.xgm", f"{self.xgm_path!r} is not a point_data entry; "
                                                   f"use one of {sorted(points)}")
            xgm = points[self.xgm_path]
        info.reasons = self.rejection.reasons(raw.train_ids, raw.frame_index, is_dark=info.is_dark, xgm=xgm,
                                              digitizer=info.digitizer)
        return {"rejection/reasons": info.reasons}

    def describe(self) -> Dict[str, Any]:
        """Settings for ``UserDataCfg``."""
        from smalldata.pulses.rejection import reason_table

        out: Dict[str, Any] = {"pattern": {"labels": list(self.pattern.unique_labels),
                                           "repeat": list(self.pattern.labels),
                                           "from_pulses": self.from_pulses,
                                           "subtract_dark": self.pattern_cfg["subtract_dark"],
                                           "match_by": self.pattern_cfg["match_by"]},
                               "rejection": {**{k: v for k, v in self.rejection_cfg.items()},
                                             "reason_bits": reason_table()}}
        if self.pulses:
            out["pulses"] = dict(self.pulses)
        if self.digitizer:
            out["digitizer"] = dict(self.digitizer)
        return out
