"""One rank's trains of a round through the offline per-batch steps, and rank 0's merge of the rows.

:func:`process_trains` takes the steps of the offline event loop's batch
(:mod:`smalldata.pipeline.eventloop`) in the same order: frame info (pulses, pattern,
digitizer), point data, rejection, every detector's calibration, functions, vetoes and
accumulators. The live tests compare its rows with the offline producer's, dataset for
dataset, so the two cannot drift apart unnoticed.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from smalldata.plugin.ragged import is_ragged
from smalldata.plugin.ragged import Ragged

Rows = Dict[str, object]


def process_trains(access, stage, setups: Sequence, points, train_ids: np.ndarray) -> Tuple[Rows, Dict[str, str]]:
    """Per-event outputs and units of the held trains ``train_ids`` (ascending, each with frames).

    Parameters
    ----------
    access : LiveAccess
    stage : FrameStage
    setups : sequence of DetectorSetup
    points : PointReader
    train_ids : ndarray
    """
    from smalldata.pulses.rejection import Reason

    modules_all = tuple(sorted({m for s in setups for m in s.modules}))
    raw = access.read_raw(modules_all, train_ids)
    outputs: Rows = {"trainId": raw.train_ids, "pulseId": raw.pulse_ids, "cellId": raw.cell_ids}
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


def merge_rows(parts: Sequence[Optional[Rows]]) -> Optional[Rows]:
    """The rows of several ranks in train order (frames of a train keep their order).

    ``parts`` are the ranks' outputs of one round (None: no rows); all have the same datasets.
    """
    parts = [p for p in parts if p is not None and len(p["trainId"])]
    if not parts:
        return None
    merged: Rows = {}
    for path in parts[0]:
        values = [p[path] for p in parts]
        merged[path] = Ragged.concatenate(values) if is_ragged(values[0]) else np.concatenate(values)
    train_ids = np.asarray(merged["trainId"])
    if np.all(np.diff(train_ids.astype(np.int64)) >= 0):
        return merged
    order = np.argsort(train_ids, kind="stable")
    return {path: (value.subset(order) if is_ragged(value) else value[order]) for path, value in merged.items()}


def light_copy(train):
    """``train`` without its frames and large point values: what other ranks need to know of it."""
    from smalldata.live.access import KEEP_VALUE_BYTES
    from smalldata.live.layouts import LiveTrain, ModuleFrames

    return LiveTrain(train_id=train.train_id, sources=train.sources, ids_from_previous=train.ids_from_previous,
                     modules={m: ModuleFrames(None, f.pulse_ids, f.cell_ids) for m, f in train.modules.items()},
                     values={k: v for k, v in train.values.items() if np.asarray(v).nbytes <= KEEP_VALUE_BYTES})


def frames_of(trains: List, modules: Sequence[int]) -> np.ndarray:
    """Frames per train: the most any of ``modules`` has."""
    return np.array([max([len(t.modules[m].pulse_ids) for m in modules if m in t.modules] or [0])
                     for t in trains], dtype=np.int64)
