"""Point data: per-train and per-pulse values aligned to every event row.

Every value that is not finite is NaN in the output: NaN is what a missing value is
everywhere (rejection limits, cube normalisation, ``/meta/losses``), and an infinite
reading of a source is no measurement either.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from smalldata.errors import DataError
from smalldata.io.runaccess import RunAccess
from smalldata.plugin.frames import RawBatch
from smalldata.pulses.bunchpattern import align_per_pulse

log = logging.getLogger(__name__)


class PointReader:
    """Reads the configured point data for each batch.

    Parameters
    ----------
    specs : mapping
        ``(group, name) -> {source, key, per, units, filler}`` from the config.
    access : RunAccess
        The run.
    """

    def __init__(self, specs: Mapping[Tuple[str, str], Mapping], access: RunAccess):
        self.specs = dict(specs)
        self.access = access
        #: infinite values replaced by NaN so far, per output path (this rank's batches)
        self.non_finite: Dict[str, int] = {}
        self._warned: set = set()
        for (group, name), spec in self.specs.items():
            if not access.has_key(spec["source"], spec["key"]):
                what = (f"source {spec['source']!r}" if spec["source"] not in access.data.all_sources
                        else f"key {spec['key']!r} of {spec['source']!r}")
                raise DataError(f"config point_data.{group}.{name}: run {access.path} has no {what}; "
                                "fix the source/key or remove the entry")

    def read(self, raw: RawBatch, pulse_index: Optional[np.ndarray] = None,
             train_pulses: Optional[np.ndarray] = None) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
        """Per-frame values for the frames of ``raw``.

        Parameters
        ----------
        raw : RawBatch
            The batch (whole trains).
        pulse_index : ndarray, optional
            (N,) index of each frame's X-ray pulse within its train (-1: none); default the
            frame's position in the train.
        train_pulses : ndarray, optional
            (T,) X-ray pulses of each of the batch's trains (ascending train ids, as
            :attr:`FrameInfo.train_pulses <smalldata.pulses.framestage.FrameInfo>`): per-pulse
            entries at or beyond it are not pulses (NaN). Default: no such limit.
        """
        outputs, units = {}, {}
        if not self.specs:
            return outputs, units
        trains, frame_train = np.unique(raw.train_ids, return_inverse=True)
        if pulse_index is None:
            pulse_index = raw.frame_index
        for (group, name), spec in self.specs.items():
            values = self.access.train_values(spec["source"], spec["key"], trains)
            path = f"{group}/{name}"
            if spec["per"] == "train":
                if values.ndim > 1:
                    values = values.reshape(len(trains), -1)[:, 0]
                per_frame = values[frame_train]
            else:
                per_frame = align_per_pulse(values.reshape(len(trains), -1), pulse_index, frame_train,
                                            n_valid=train_pulses)
                if spec.get("filler") is not None:  # entries beyond the train's pulses, as EXtra's XGM reads them
                    per_frame[per_frame == spec["filler"]] = np.nan
            outputs[path] = self._finite(path, per_frame.astype(np.float64), raw.train_ids)
            units[path] = spec["units"]
        return outputs, units

    def read_trains(self, train_ids: np.ndarray) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
        """One value per train of ``train_ids`` (ascending), for per-train detectors' rows.

        A per-train entry is the train's value; a per-pulse entry is the mean over the train's
        entries that are values (``filler`` entries and NaN left out; NaN if none is).
        """
        outputs, units = {}, {}
        train_ids = np.asarray(train_ids, dtype=np.uint64)
        for (group, name), spec in self.specs.items():
            path = f"{group}/{name}"
            values = self.access.train_values(spec["source"], spec["key"], train_ids)
            values = values.reshape(len(train_ids), -1).astype(np.float64)
            if spec["per"] == "train":
                per_train = values[:, 0]
            else:
                if spec.get("filler") is not None:
                    values[values == spec["filler"]] = np.nan
                counted = np.isfinite(values)
                total = np.where(counted, values, 0.0).sum(axis=1)
                n = counted.sum(axis=1)
                per_train = np.divide(total, n, out=np.full(len(train_ids), np.nan), where=n > 0)
            outputs[path] = self._finite(path, per_train, train_ids)
            units[path] = spec["units"]
        return outputs, units

    def _finite(self, path: str, values: np.ndarray, train_ids: np.ndarray) -> np.ndarray:
        """``values`` with +-inf as NaN: no value, like a missing one (counted in ``/meta/losses``).

        A source's inf would otherwise pass into rejection limits, cube normalisation and
        means as if it were a measurement; each path's first one is logged as a warning.
        """
        bad = np.isinf(values)
        if bad.any():
            values[bad] = np.nan
            self.non_finite[path] = self.non_finite.get(path, 0) + int(np.count_nonzero(bad))
            if path not in self._warned:
                self._warned.add(path)
                i = int(np.flatnonzero(bad)[0])
                log.warning("point_data %s: infinite value in train %d (and maybe others); such values are NaN "
                            "in the output and counted with the NaN in /meta/losses", path, int(train_ids[i]))
        return values

    def describe(self) -> Dict[str, Dict]:
        """The specs as a nested mapping (for UserDataCfg)."""
        out: Dict[str, Dict] = {}
        for (group, name), spec in self.specs.items():
            out.setdefault(group, {})[name] = dict(spec)
        return out
