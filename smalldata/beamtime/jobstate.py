"""Where each run of a beamtime stands: the submissions recorded by smd_submit, SLURM's queue and
the outputs, combined into one state per run.

The record lives next to the outputs, ``<output_dir>/.smd_submit/jobs.json``: per run the SLURM
job (``<array>_<task>``), the fingerprint it was submitted with, its log file and the dark job it
waits for. States:

``new``       never submitted, no output
``queued``    its job waits in SLURM's queue
``running``   its job runs
``done``      the output is complete and carries the fingerprint of the current config and darks
``outdated``  the output was made from another config or dark
``partial``   the output holds only the first trains (--max-trains)
``failed``    its job ended without the output it was submitted for; the detail is the last
              error line of its log
"""
from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import h5py

from smalldata.beamtime.fingerprint import output_fingerprint
from smalldata.beamtime.slurm import ACTIVE_STATES

log = logging.getLogger(__name__)

STATES = ("new", "queued", "running", "done", "outdated", "partial", "failed")
#: states whose run a submit processes (again)
TO_PROCESS = ("new", "outdated", "partial", "failed")


def state_dir(output_dir: os.PathLike) -> Path:
    """``<output_dir>/.smd_submit``: the record, the job scripts and the job logs."""
    return Path(output_dir) / ".smd_submit"


def output_path(output_dir: os.PathLike, run: int) -> Path:
    """``<output_dir>/r<run>.h5``, where smd_producer writes a run by default."""
    return Path(output_dir) / f"r{int(run):04d}.h5"


class JobRecord:
    """The submissions of one output folder (``jobs.json``), read and written under a file lock.

    Parameters
    ----------
    output_dir : path
    """

    def __init__(self, output_dir: os.PathLike):
        self.folder = state_dir(output_dir)
        self.path = self.folder / "jobs.json"

    def read(self) -> Dict[str, dict]:
        """``{"runs": {run: entry}, "darks": {dark run: entry}}`` as stored (empty when nothing was submitted)."""
        if not self.path.is_file():
            return {"runs": {}, "darks": {}}
        data = json.loads(self.path.read_text())
        data.setdefault("runs", {})
        data.setdefault("darks", {})
        return data

    @contextmanager
    def update(self) -> Iterator[Dict[str, dict]]:
        """Read, let the caller change, and write back atomically, holding the folder's lock."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


@dataclass
class RunState:
    """The state of one run.

    Attributes
    ----------
    run : int
    state : str
        One of :data:`STATES`.
    job : str
        SLURM job of its last submission (``<array>_<task>``), '' if none.
    fingerprint : str
        Fingerprint of its output ('' without one).
    detail : str
        Why: the error line of a failed job, the queue reason, what differs.
    output : Path
    """

    run: int
    state: str
    job: str = ""
    fingerprint: str = ""
    detail: str = ""
    output: Path = field(default_factory=Path)


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def last_error_line(log_path: os.PathLike) -> str:
    """The last line of a job log that reports an error (else its last line); '' without a log."""
    path = Path(log_path)
    if not path.is_file():
        return ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        lower = line.lower()
        if "error" in lower or "traceback" in lower or "killed" in lower or "cancelled" in lower:
            return line
    return lines[-1] if lines else ""


def output_facts(path: Path) -> Optional[dict]:
    """``{"fingerprint", "partial"}`` of a finished output, None if there is none (or it is unreadable)."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            command = str(f["meta"].attrs.get("command", "")) if "meta" in f else ""
        return {"fingerprint": output_fingerprint(path) or "", "partial": "--max-trains" in command}
    except OSError as exc:
        log.warning("%s cannot be read (%s); it counts as no output", path, str(exc).splitlines()[0])
        return None


def run_states(runs: List[int], output_dir: os.PathLike, current: Optional[str],
               queue: Optional[Dict[str, str]] = None, compare: bool = True) -> List[RunState]:
    """The state of each run of ``runs``.

    Parameters
    ----------
    runs : list of int
    output_dir : path
    current : str or None
        The fingerprint of the current config and darks (None: a dark is not made yet).
    queue : dict, optional
        SLURM's queue (:func:`~smalldata.beamtime.slurm.queue_states`); None: SLURM not asked.
    compare : bool
        Compare complete outputs with ``current`` (False: no config at hand, a complete output is ``done``).
    """
    record = JobRecord(output_dir).read()
    queue = queue or {}
    states = []
    for run in runs:
        entry = record["runs"].get(str(run))
        out = output_path(output_dir, run)
        job = entry["job"] if entry else ""
        queued = queue.get(job, "") if job else ""
        if not queued and entry and entry.get("array") and queue.get(str(entry["array"])) in ACTIVE_STATES:
            queued = queue[str(entry["array"])]  # an array not yet split into tasks
        facts = output_facts(out)
        fp = facts["fingerprint"] if facts else ""
        if queued in ACTIVE_STATES:
            state = "running" if queued in ("RUNNING", "COMPLETING") else "queued"
            states.append(RunState(run, state, job, fp, queued.lower(), out))
            continue
        wanted = (entry or {}).get("fingerprint") or current
        made_by_job = facts is not None and (entry is None or fp == wanted)
        if entry is not None and not made_by_job:
            states.append(RunState(run, "failed", job, fp, _failure_detail(entry, record), out))
        elif facts is None:
            states.append(RunState(run, "new", job, "", "", out))
        elif facts["partial"]:
            states.append(RunState(run, "partial", job, fp, "made with --max-trains", out))
        elif compare and (current is None or fp != current):
            states.append(RunState(run, "outdated", job, fp, "made from another config or dark", out))
        else:
            states.append(RunState(run, "done", job, fp, "", out))
    return states


def _failure_detail(entry: dict, record: dict) -> str:
    line = last_error_line(entry.get("log", ""))
    dark = record["darks"].get(str(entry.get("dark_run", "")), None) if entry.get("dark_job") else None
    if not line and dark is not None:
        dark_line = last_error_line(dark.get("log", ""))
        if dark_line:
            return f"dark run {entry['dark_run']} failed: {dark_line}"
    if line:
        return line
    return f"job {entry.get('job', '?')} ended without output and without a log ({entry.get('log', '')})"
