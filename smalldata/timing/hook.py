"""The producer's hook: point data with the ``delay/*`` outputs of the ``delay`` section."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from smalldata.io.pointdata import PointReader
from smalldata.io.runaccess import RunAccess
from smalldata.plugin.frames import RawBatch


class PointsWithDelay(PointReader):
    """A :class:`PointReader` that also writes the per-frame delays (:class:`DelayReader`)."""

    def __init__(self, specs, access: RunAccess, delay: Optional[Dict[str, Any]] = None,
                 pulses: Optional[Dict[str, Any]] = None, run_train_ids: Optional[np.ndarray] = None):
        super().__init__(specs, access)
        self.delay = None
        if delay is not None:
            from smalldata.timing.delays import DelayReader

            ids = access.train_ids if run_train_ids is None else run_train_ids
            self.delay = DelayReader(delay, pulses, access, ids)

    def read(self, raw: RawBatch, pulse_index: Optional[np.ndarray] = None,
             train_pulses: Optional[np.ndarray] = None) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
        """Point data and, with a delay section, ``delay/*`` of the frames of ``raw``."""
        outputs, units = super().read(raw, pulse_index, train_pulses)
        if self.delay is not None:
            index = raw.frame_index if pulse_index is None else pulse_index
            out, u = self.delay.read(raw, index)
            outputs.update(out)
            units.update(u)
        return outputs, units

    def describe(self) -> Dict[str, Dict]:
        """Point-data specs and, under ``delay``, the delay settings and scan steps."""
        out = super().describe()
        if self.delay is not None:
            out["delay"] = self.delay.describe()
        return out


def point_reader(config, access: RunAccess, run_train_ids: Optional[np.ndarray] = None) -> PointReader:
    """The producer's point-data reader for ``config`` (a ProducerConfig)."""
    delay = config.settings.get("delay")
    if delay is None:
        return PointReader(config.point_data, access)
    return PointsWithDelay(config.point_data, access, delay, config.settings.get("pulses"), run_train_ids)


def delay_loss_paths(settings: Optional[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """``(path, per)`` of the delay outputs whose NaN count as losses (``/meta/losses``, the summary):
    the total delay of X-ray frames (NaN where the stage or the BAM is invalid)."""
    return [] if settings is None else [("delay/total", "pulse")]
