"""The table of runs: one row per run of a proposal, kept as CSV and HDF5 next to the outputs.

``<output_dir>/runs_p<proposal>.csv`` and ``.h5`` (``/runs/<column>``, one entry per run, the
column order in the group's ``columns`` attribute). The table is updated incrementally: a run's
numbers are read again only when its output file changed (size, modification time) or when it
is new; the others are kept from the stored table. The state and fingerprint of every run are
always worked out afresh (cheap, and they change without the output changing).
"""
from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import h5py
import numpy as np

from smalldata.beamtime.jobstate import JobRecord, RunState, output_path, run_states
from smalldata.beamtime.runrow import output_row

log = logging.getLogger(__name__)

FIRST_COLUMNS = ("run", "proposal", "state", "fingerprint", "detail", "trains", "trains_skipped", "frames",
                 "frames_kept", "frames_rejected")
#: columns that say which output a row was read from (a changed file is read again)
SOURCE_COLUMNS = ("output_size", "output_mtime_ns")


def table_paths(output_dir: os.PathLike, proposal: int) -> Dict[str, Path]:
    """The CSV and HDF5 files of the table."""
    base = Path(output_dir) / f"runs_p{int(proposal):06d}"
    return {"csv": base.with_suffix(".csv"), "h5": base.with_suffix(".h5")}


def runs_in_folder(output_dir: os.PathLike) -> List[int]:
    """Runs with an output (``r<run>.h5``) or a submission in ``output_dir``."""
    found = set()
    for path in Path(output_dir).glob("r[0-9]*.h5"):
        if path.stem[1:].isdigit():
            found.add(int(path.stem[1:]))
    found.update(int(r) for r in JobRecord(output_dir).read()["runs"])
    return sorted(found)


def read_table(path: os.PathLike) -> Dict[int, Dict[str, object]]:
    """The rows of a stored HDF5 table by run ({} when there is none)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with h5py.File(path, "r") as f:
        group = f["runs"]
        columns = [str(c) for c in group.attrs["columns"]]
        data = {c: group[c][()] for c in columns}
    rows = {}
    for i, run in enumerate(data["run"]):
        row = {}
        for c in columns:
            value = data[c][i]
            row[c] = value.decode() if isinstance(value, bytes) else value.item() if hasattr(value, "item") else value
        rows[int(run)] = row
    return rows


def update_table(output_dir: os.PathLike, proposal: int, runs: Optional[Sequence[int]] = None,
                 current: Optional[str] = None, queue: Optional[Dict[str, str]] = None,
                 compare: bool = True) -> List[Dict[str, object]]:
    """Bring the table of ``output_dir`` up to date for ``runs`` (default: every run found there).

    Parameters
    ----------
    output_dir : path
    proposal : int
    runs : list of int, optional
    current : str, optional
        Fingerprint of the current config and darks (None: a dark is missing, outputs are outdated).
    queue : dict, optional
        SLURM's queue (None: not asked).
    compare : bool
        Compare outputs with ``current`` (False: no config at hand; complete outputs are ``done``).

    Returns
    -------
    list of dict
        The rows of ``runs``, in run order (the stored table keeps every run it ever had).
    """
    paths = table_paths(output_dir, proposal)
    stored = read_table(paths["h5"])
    runs = sorted(set(runs)) if runs is not None else runs_in_folder(output_dir)
    states: Dict[int, RunState] = {st.run: st for st in run_states(runs, output_dir, current, queue, compare)}
    changed = 0
    for run in runs:
        out = output_path(output_dir, run)
        row = dict(stored.get(run, {"run": run, "proposal": int(proposal)}))
        if out.is_file():
            st = out.stat()
            source = {"output_size": int(st.st_size), "output_mtime_ns": int(st.st_mtime_ns)}
            if any(row.get(k) != v for k, v in source.items()):
                row = {**output_row(out), **source}
                changed += 1
        elif "frames" in row:  # the output is gone: keep no numbers of it
            row = {"run": run, "proposal": int(proposal)}
            changed += 1
        row.update({"state": states[run].state, "fingerprint": states[run].fingerprint,
                    "detail": states[run].detail})
        stored[run] = row
    log.info("table of runs: %d run(s), %d read from their outputs", len(runs), changed)
    write_table(paths, [stored[r] for r in sorted(stored)])
    return [stored[r] for r in runs]


def _columns(rows: List[Dict[str, object]]) -> List[str]:
    columns = [c for c in FIRST_COLUMNS if any(c in r for r in rows)]
    for row in rows:
        columns.extend(c for c in row if c not in columns and c not in SOURCE_COLUMNS)
    return columns + list(SOURCE_COLUMNS)


def _is_text(values: list) -> bool:
    return any(isinstance(v, str) for v in values)


def write_table(paths: Dict[str, Path], rows: List[Dict[str, object]]) -> None:
    """Write the rows as CSV and HDF5, each to a temporary name renamed when complete."""
    columns = _columns(rows)
    tmp_csv = paths["csv"].with_name(f".{paths['csv'].name}.{os.getpid()}")
    with open(tmp_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in columns])
    os.replace(tmp_csv, paths["csv"])
    tmp_h5 = paths["h5"].with_name(f".{paths['h5'].name}.{os.getpid()}")
    with h5py.File(tmp_h5, "w") as f:
        group = f.create_group("runs")
        for c in columns:
            values = [row.get(c) for row in rows]
            if _is_text(values):
                group.create_dataset(c, data=np.array(["" if v is None else str(v) for v in values], dtype=object),
                                     dtype=h5py.string_dtype())
            elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
                group.create_dataset(c, data=np.array(values, dtype=np.int64))
            else:
                group.create_dataset(c, data=np.array([np.nan if v is None else float(v) for v in values]))
        group.attrs["columns"] = np.array(columns, dtype=object)
    os.replace(tmp_h5, paths["h5"])


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def format_table(rows: List[Dict[str, object]], columns: Sequence[str] = ("run", "state", "trains", "frames",
                                                                        "frames_kept", "frames_rejected",
                                                                        "xgm_mean", "scan_variable", "scan_steps",
                                                                        "fingerprint", "detail")) -> str:
    """A console view of the main columns."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    table = [list(columns)] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    # numbers right-aligned; the last column (the detail, e.g. an error line) as it is
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] for r in table).rstrip()
