"""Pump-probe delay per frame: delay stage, trigger delay and bunch arrival monitor (BAM).

The convention is EXtra's ``OpticalLaserDelay`` (the facility's reference), in ps::

    stage = sign * passes * (position - time_zero) * 1e-3 m/mm / c
    total = stage - (trigger - trigger_reference) + bam_sign * (bam - bam_reference)

The BAM records ``bam_entries_per_slot`` values per bunch-pattern slot; the frame's value
is entry ``bam_entries_per_slot * slot`` of its train, where ``slot`` is the bunch-pattern
slot of the frame's SASE pulse. A frame's BAM is invalid (``delay/bam_valid`` False and
``delay/total`` NaN, counted in ``/meta/losses`` as ``nan delay/total``) when the frame has no X-ray pulse, the value is
not finite, it lies more than ``bam_max_abs`` from the reference, or the BAM's error flag
is set for the train. The stage is per train; trains are labelled with their scan step
(:mod:`smalldata.timing.steps`), and ``delay/step_delay`` is the step's nominal delay.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
from scipy.constants import speed_of_light

from smalldata.errors import DataError
from smalldata.io.runaccess import RunAccess
from smalldata.plugin.frames import RawBatch
from smalldata.config.delay import DELAY_OUTPUTS
from smalldata.timing.steps import ScanSteps, find_steps

log = logging.getLogger(__name__)

_BAM_SCALE = {"fs": 1e-3, "ps": 1.0}


def stage_to_ps(position_mm: np.ndarray, time_zero_mm: float, passes: int = 2, sign: int = 1) -> np.ndarray:
    """Delay of a stage position, ps: ``sign * passes * (position - time_zero) * 1e-3 / c``."""
    return sign * passes * (np.asarray(position_mm, dtype=np.float64) - time_zero_mm) * 1e-3 / speed_of_light * 1e12


class DelayReader:
    """Per-frame delays of a run (the producer's ``delay`` section).

    Parameters
    ----------
    settings : mapping
        The validated ``delay`` section (:func:`smalldata.config.delay.validate_delay`).
    pulses : mapping or None
        The validated ``pulses`` section (bunch-pattern source and SASE), needed with a BAM.
    access : RunAccess
    run_train_ids : ndarray
        The trains the producer processes (scan steps are found over all of them).
    """

    def __init__(self, settings: Mapping[str, Any], pulses: Optional[Mapping[str, Any]], access: RunAccess,
                 run_train_ids: np.ndarray):
        self.s = dict(settings)
        self.pulses = dict(pulses) if pulses else None
        self.access = access
        s = self.s
        self._require(s["stage_source"], s["stage_key"], "stage_source", "stage_key")
        if s["target_key"] is not None:
            self._require(s["stage_source"], s["target_key"], "stage_source", "target_key")
        if s["trigger_source"] is not None:
            self._require(s["trigger_source"], s["trigger_key"], "trigger_source", "trigger_key")
        if s["bam_error_source"] is not None:
            self._require(s["bam_error_source"], s["bam_error_key"], "bam_error_source", "bam_error_key")
        self.run_train_ids = np.asarray(run_train_ids, dtype=np.uint64)
        actual = access.train_values(s["stage_source"], s["stage_key"], self.run_train_ids)
        target = None if s["target_key"] is None else \
            access.train_values(s["stage_source"], s["target_key"], self.run_train_ids)
        self.steps: ScanSteps = find_steps(actual, target, s["step_tolerance"], s["step_min_trains"])
        if s["bam_source"] is not None:
            self._require(s["bam_source"], s["bam_key"], "bam_source", "bam_key")
            self._check_bam_length()

    def _require(self, source: str, key: str, source_name: str, key_name: str) -> None:
        if source not in self.access.data.all_sources:
            raise DataError(f"config delay.{source_name}: run {self.access.path} has no source {source!r}; "
                            f"fix delay.{source_name} or remove it")
        if key not in self.access.data[source].keys():
            raise DataError(f"config delay.{key_name}: source {source!r} of run {self.access.path} has no key "
                            f"{key!r}; fix delay.{key_name}")

    def _check_bam_length(self) -> None:
        """The BAM's entries per train must reach the last SASE pulse of the first trains."""
        from smalldata.pulses.bunchpattern import sase_pulse_slots

        head = self.run_train_ids[: max(1, min(len(self.run_train_ids), 10))]
        shape = self.access.data[self.s["bam_source"], self.s["bam_key"]].entry_shape
        length = int(np.prod(shape)) if shape else 1
        rows = self.access.train_values(self.pulses["source"], self.pulses["key"], head)
        rows = np.where(np.isfinite(rows), rows, 0).astype(np.uint32)
        slots, n_pulses = sase_pulse_slots(rows, sase=self.pulses["sase"])
        last = int(slots.max()) if n_pulses.any() else 0
        need = self.s["bam_entries_per_slot"] * last + 1
        if length < need:
            raise DataError(f"config delay.bam_source: {self.s['bam_source']!r} / {self.s['bam_key']!r} has {length} "
                            f"entries per train, but the pulse in slot {last} needs entry "
                            f"{need - 1} ({self.s['bam_entries_per_slot']} per slot); fix "
                            "delay.bam_entries_per_slot or delay.bam_source")

    # ------------------------------------------------------------------ per batch
    def read(self, raw: RawBatch, pulse_index: np.ndarray) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
        """The ``delay/*`` outputs of the frames of ``raw``.

        Parameters
        ----------
        raw : RawBatch
        pulse_index : (N,) int64
            Index of each frame's SASE pulse in its train (-1: no X-rays), from the frame stage.
        """
        s = self.s
        trains, tof = np.unique(raw.train_ids, return_inverse=True)
        position = self.access.train_values(s["stage_source"], s["stage_key"], trains)[tof]
        stage = stage_to_ps(position, s["time_zero"], s["passes"], s["sign"])
        out: Dict[str, np.ndarray] = {"delay/stage_position": position, "delay/stage": stage}
        total = stage.copy()
        nominal_offset = np.zeros(len(raw))
        if s["trigger_source"] is not None:
            trigger = self.access.train_values(s["trigger_source"], s["trigger_key"], trains)[tof] \
                - s["trigger_reference"]
            out["delay/trigger"] = trigger
            total -= trigger
            nominal_offset -= trigger
        valid = np.isfinite(total)
        if s["bam_source"] is not None:
            bam, bam_valid = self._bam(trains, tof, np.asarray(pulse_index, np.int64))
            out["delay/bam"] = bam
            out["delay/bam_valid"] = bam_valid
            total = np.where(bam_valid, total + s["bam_sign"] * np.nan_to_num(bam), np.nan)
            valid &= bam_valid
        out["delay/total"] = total
        out["delay/valid"] = valid
        rows = np.minimum(np.searchsorted(self.run_train_ids, trains), max(len(self.run_train_ids) - 1, 0))
        found = self.run_train_ids[rows] == trains
        step = np.where(found, self.steps.step[rows], -1)[tof]
        out["delay/step"] = step.astype(np.int32)
        step_pos = np.where(step >= 0, self.steps.values[np.maximum(step, 0)] if self.steps.n_steps else np.nan,
                            np.nan)
        out["delay/step_delay"] = stage_to_ps(step_pos, s["time_zero"], s["passes"], s["sign"]) + nominal_offset
        units = {k: DELAY_OUTPUTS[k] for k in out}
        return out, units

    def _bam(self, trains: np.ndarray, tof: np.ndarray, pulse_index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(bam in ps relative to the reference, valid) per frame."""
        from smalldata.pulses.bunchpattern import sase_pulse_slots

        s = self.s
        rows = self.access.train_values(self.pulses["source"], self.pulses["key"], trains)
        have_pattern = np.all(np.isfinite(rows), axis=1)
        slots, n_pulses = sase_pulse_slots(np.where(np.isfinite(rows), rows, 0).astype(np.uint32),
                                           sase=self.pulses["sase"])
        values = self.access.train_values(s["bam_source"], s["bam_key"], trains).reshape(len(trains), -1)
        has_pulse = (pulse_index >= 0) & have_pattern[tof] & (pulse_index < n_pulses[tof])
        pidx = np.where(has_pulse, pulse_index, 0)
        slot = np.where(has_pulse, slots[tof, np.minimum(pidx, max(slots.shape[1] - 1, 0))] if slots.size else 0, 0)
        entry = s["bam_entries_per_slot"] * slot
        if np.any(entry[has_pulse] >= values.shape[1]):
            bad = int(entry[has_pulse].max())
            raise DataError(f"config delay.bam_source: {s['bam_source']!r} has {values.shape[1]} entries per train, "
                            f"entry {bad} needed; fix delay.bam_entries_per_slot or delay.bam_source")
        raw_bam = np.where(has_pulse, values[tof, np.minimum(entry, values.shape[1] - 1)], np.nan)
        bam = (raw_bam * _BAM_SCALE[s["bam_units"]]) - s["bam_reference"]
        valid = has_pulse & np.isfinite(bam) & (np.abs(bam) <= s["bam_max_abs"])
        if s["bam_error_source"] is not None:
            error = self.access.train_values(s["bam_error_source"], s["bam_error_key"], trains)
            valid &= (np.nan_to_num(error, nan=1.0) == 0)[tof]
        return np.where(valid, bam, np.nan), valid

    def describe(self) -> Dict[str, Any]:
        """Settings and the scan steps, for UserDataCfg."""
        out: Dict[str, Any] = {k: v for k, v in self.s.items() if v is not None}
        out["step_values"] = self.steps.values
        out["step_delays"] = stage_to_ps(self.steps.values, self.s["time_zero"], self.s["passes"], self.s["sign"])
        out["n_backlash_trains"] = int(self.steps.backlash.sum())
        return out
