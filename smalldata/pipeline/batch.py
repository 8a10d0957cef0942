"""One batch of frames through the per-batch steps: frame facts, point data, rejection, detectors."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from smalldata.plugin.frames import RawBatch
from smalldata.pulses.rejection import Reason


def process_batch(raw: RawBatch, stage, setups: Sequence, points) -> Tuple[Dict[str, object], Dict[str, str]]:
    """The per-event outputs of ``raw`` and their units, in the order the offline and live producers write.

    Parameters
    ----------
    raw : RawBatch
        The batch's frames (from a run on disk or from the live stream).
    stage : FrameStage
        Pulse alignment, frame labels and rejection reasons.
    setups : sequence of DetectorSetup
        Each detector's calibration and functions.
    points : PointReader
        Point data (XGM, scan values, delays) aligned to the frames.

    Returns
    -------
    outputs : dict
        Dataset path -> per-event values (ragged lists included), ``rejection/reasons`` last.
    units : dict
        Dataset path -> unit.
    """
    outputs: Dict[str, object] = {"trainId": raw.train_ids, "pulseId": raw.pulse_ids, "cellId": raw.cell_ids}
    info, stage_out, units = stage.frame_info(raw)
    outputs.update(stage_out)
    point_out, point_units = points.read(raw, pulse_index=info.pulse_index, train_pulses=info.train_pulses)
    outputs.update(point_out)
    units.update(point_units)
    stage.reject(raw, info, point_out)
    for s in setups:
        det_out, det_units, vetoed = s.process(raw, info, point_out)
        outputs.update(det_out)
        units.update(det_units)
        info.reasons = info.reasons | np.where(vetoed, np.uint16(Reason.VETO), np.uint16(0))
    outputs["rejection/reasons"] = info.reasons
    return outputs, units
