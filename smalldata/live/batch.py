"""One rank's trains of a round through the offline per-batch steps, and rank 0's merge of the rows.

:func:`process_trains` runs the offline event loop's batch steps on the held trains
(:func:`smalldata.pipeline.batch.process_batch`: frame info, point data, rejection, every
detector's calibration, functions, vetoes and accumulators).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from smalldata.pipeline.batch import process_batch
from smalldata.plugin.ragged import Ragged, is_ragged

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
    modules_all = tuple(sorted({m for s in setups for m in s.modules}))
    return process_batch(access.read_raw(modules_all, train_ids), stage, setups, points)


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
