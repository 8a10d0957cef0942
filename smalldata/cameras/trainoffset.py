"""The train-id offset of a camera, measured: the shift that best correlates a per-train camera
value (e.g. its spectrum's integral) with a per-train reference of the same trains (e.g. the XGM).

The facility's ToolBox shifts the Newton camera's train ids by -1 before joining them with the
other sources; :func:`best_train_offset` checks that on a real run (docs/detectors/viking.md).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from smalldata.errors import DataError


def offset_correlations(camera_ids: np.ndarray, camera_values: np.ndarray, ref_ids: np.ndarray,
                        ref_values: np.ndarray, shifts: Sequence[int] = (-2, -1, 0, 1, 2),
                        min_trains: int = 10) -> Dict[int, float]:
    """Pearson correlation of the camera values with the reference for each train-id shift.

    Parameters
    ----------
    camera_ids, camera_values : (N,) arrays
        Recorded train ids of the camera and one value per train.
    ref_ids, ref_values : (M,) arrays
        Train ids and values of the reference source.
    shifts : sequence of int
        Shifts added to the camera's recorded ids.
    min_trains : int
        Trains in common needed for a correlation (fewer: NaN).
    """
    cam_ids = np.asarray(camera_ids, dtype=np.int64)
    ref = dict(zip(np.asarray(ref_ids, dtype=np.int64).tolist(), np.asarray(ref_values, dtype=np.float64)))
    out: Dict[int, float] = {}
    for s in shifts:
        pairs = [(v, ref[t + s]) for t, v in zip(cam_ids.tolist(), np.asarray(camera_values, np.float64))
                 if t + s in ref]
        if len(pairs) < min_trains:
            out[int(s)] = float("nan")
            continue
        a, b = np.array(pairs).T
        out[int(s)] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return out


def best_train_offset(camera_ids: np.ndarray, camera_values: np.ndarray, ref_ids: np.ndarray,
                      ref_values: np.ndarray, shifts: Sequence[int] = (-2, -1, 0, 1, 2),
                      min_trains: int = 10) -> Tuple[int, Dict[int, float]]:
    """The shift with the highest correlation (:func:`offset_correlations`), and all correlations.

    Raises a one-line :class:`DataError` when no shift leaves enough trains in common, or the
    trains do not vary enough to tell the shifts apart.
    """
    corr = offset_correlations(camera_ids, camera_values, ref_ids, ref_values, shifts, min_trains)
    finite = {s: c for s, c in corr.items() if np.isfinite(c)}
    if not finite:
        raise DataError(f"no train-id shift in {list(shifts)} leaves {min_trains} trains in common with a varying "
                        "reference; use a longer run with the beam on")
    best = max(finite, key=finite.get)
    return best, corr
