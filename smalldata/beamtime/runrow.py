"""One row of the table of runs, read from a run's output (and its raw run's start and end time).

Columns (all numbers from the output file itself):

- ``run``, ``proposal``, ``state`` (:mod:`smalldata.beamtime.jobstate`), ``fingerprint``
- ``trains`` (of the input), ``trains_skipped``, ``frames`` (rows), ``frames_kept``,
  ``frames_rejected`` and ``frames_rejected_<REASON>`` for every rejection reason
- losses: ``incomplete_pairs`` ((train, module) pairs with missing frames), ``trains_invalid``
- ``xgm_mean`` (uJ): the mean of the rejection's XGM dataset (else the first under ``xgm/``)
  over the frames that have a value
- ``scan_variable``, ``scan_steps``, ``scan_min``, ``scan_max``: the point dataset under
  ``scan/`` with the most distinct values (steps: distinct values)
- ``mean <path> [<label>]``: the mean of each per-frame scalar over the kept frames of each
  frame label (pumped, unpumped, ...)
- ``run_start``, ``run_end``: the raw run's creation and last update (UTC), ``processed``: when
  the output was finished
"""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional

import h5py
import numpy as np

from smalldata.pulses.rejection import Reason

log = logging.getLogger(__name__)

#: per-event groups that are bookkeeping, not measured scalars
BOOKKEEPING = ("pattern/", "pulses/", "rejection/")
EVENT_IDS = ("trainId", "pulseId", "cellId")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def is_frame_coordinate(name: str) -> bool:
    """Whether dataset ``name`` is a frame's id (``trainId``, ``pulseId``, ``cellId``), at the root or
    copied into a group as its coordinate, not a measured value."""
    return name.rsplit("/", 1)[-1] in EVENT_IDS


def _xgm_path(f: h5py.File) -> Optional[str]:
    group = f.get("UserDataCfg/frames/rejection")
    if group is not None:
        path = _text(group.attrs.get("xgm", "None"))
        if path != "None" and path in f:
            return path
    if "xgm" in f and isinstance(f["xgm"], h5py.Group):
        names = sorted(n for n, d in f["xgm"].items() if isinstance(d, h5py.Dataset) and not is_frame_coordinate(n))
        if names:
            return f"xgm/{names[0]}"
    return None


def _scalars(f: h5py.File, n: int) -> List[str]:
    """Per-frame numeric scalar datasets outside the ids and bookkeeping, in file order."""
    found = []

    def visit(name, obj):
        if (isinstance(obj, h5py.Dataset) and obj.shape == (n,) and obj.dtype.kind in "iuf"
                and not name.startswith(("UserDataCfg", "meta", "Sums", "Cubes") + BOOKKEEPING)
                and not is_frame_coordinate(name) and "/" in name and "ragged_values_of" not in obj.attrs):
            found.append(name)

    f.visititems(visit)
    return found


def _raw_times(run_path: str) -> Dict[str, str]:
    """``run_start``/``run_end`` of the raw run (its METADATA creation and update dates), '' if unknown."""
    try:
        from extra_data import RunDirectory

        meta = RunDirectory(run_path).run_metadata()
    except Exception as exc:  # noqa: BLE001 - the raw run may be gone or older than format 1.0
        log.debug("no run metadata from %s: %s", run_path, exc)
        return {"run_start": "", "run_end": ""}

    def iso(stamp) -> str:
        try:
            when = datetime.datetime.strptime(_text(stamp), "%Y%m%dT%H%M%S%z")
        except ValueError:
            return _text(stamp)
        return when.isoformat()

    return {"run_start": iso(meta.get("creationDate", "")), "run_end": iso(meta.get("updateDate", ""))}


def output_row(path: os.PathLike) -> Dict[str, object]:
    """The numbers of one output file (every column but ``state`` and ``fingerprint``)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        meta = f["meta"].attrs
        losses = f["meta/losses"].attrs if "meta/losses" in f else {}
        n = int(f["trainId"].shape[0])
        reasons = f["rejection/reasons"][()] if "rejection/reasons" in f else np.zeros(n, np.uint16)
        kept = reasons == 0
        row: Dict[str, object] = {
            "run": int(meta["run"]), "proposal": int(meta["proposal"]),
            "trains": int(meta["n_trains_input"]), "trains_skipped": int(meta["n_trains_skipped"]),
            "frames": n, "frames_kept": int(kept.sum()), "frames_rejected": int((~kept).sum())}
        for reason in Reason:
            row[f"frames_rejected_{reason.name}"] = int(np.count_nonzero(reasons & np.uint16(reason)))
        row["incomplete_pairs"] = int(losses.get("incomplete_pairs", 0))
        row["trains_invalid"] = int(f["meta/invalid_trainId"].shape[0]) if "meta/invalid_trainId" in f else 0
        xgm = _xgm_path(f)
        values = f[xgm][()].astype(np.float64) if xgm else np.array([])
        finite = values[np.isfinite(values)]
        row["xgm_mean"] = float(finite.mean()) if finite.size else float("nan")
        row.update(_scan_columns(f, n))
        labels = [_text(x) for x in f["UserDataCfg/frames/pattern"].attrs.get("labels", [])] \
            if "UserDataCfg/frames/pattern" in f else []
        label_id = f["pattern/label_id"][()] if "pattern/label_id" in f else np.zeros(n, np.int16)
        for name in _scalars(f, n):
            data = f[name][()].astype(np.float64)
            for index, label in enumerate(labels or ["all"]):
                chosen = kept & (label_id == index) if labels else kept
                chosen &= np.isfinite(data)
                row[f"mean {name} [{label}]"] = float(data[chosen].mean()) if chosen.any() else float("nan")
        row.update(_raw_times(_text(meta.get("run_path", ""))))
        row["processed"] = _text(meta.get("end", ""))
    return row


def _scan_columns(f: h5py.File, n: int) -> Dict[str, object]:
    best, steps, lo, hi = "", 0, float("nan"), float("nan")
    if "scan" in f and isinstance(f["scan"], h5py.Group):
        for name, ds in f["scan"].items():
            if not isinstance(ds, h5py.Dataset) or ds.shape != (n,) or is_frame_coordinate(name):
                continue
            values = ds[()].astype(np.float64)
            values = values[np.isfinite(values)]
            distinct = np.unique(values)
            if len(distinct) > steps:
                best, steps = f"scan/{name}", len(distinct)
                lo, hi = float(distinct[0]), float(distinct[-1])
    return {"scan_variable": best, "scan_steps": steps, "scan_min": lo, "scan_max": hi}
