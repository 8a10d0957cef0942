"""The SLURM commands smd_submit uses: sbatch, squeue and scontrol, through their command lines.

Only the commands' documented, parsable outputs are read (``sbatch --parsable``, ``squeue -h -o``,
``scontrol -o show job``), so any SLURM installation the user's shell reaches works: the
facility's cluster, or the single-node cluster of the tests (``SLURM_CONF``).
"""
from __future__ import annotations

import getpass
import logging
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence

from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)

#: Seconds a SLURM command may take before the cluster counts as not answering.
COMMAND_TIMEOUT_S = 60.0

#: squeue states of a job that has not ended.
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                 "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED")


class SlurmError(SmallDataError):
    """SLURM is missing, does not answer, or refused a job."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SlurmError(f"no SLURM on this machine: {name} is not on PATH; submit from a login node of the "
                         "cluster (e.g. max-exfl), or process each run with 'mpirun -n N smd_producer -r RUN -c "
                         "CONFIG'")
    return path


def _run(cmd: List[str], what: str) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"SLURM did not answer {what} within {COMMAND_TIMEOUT_S:g} s; check that the cluster "
                         "is up (sinfo) and try again") from None
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        raise SlurmError(f"{what} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")
    return result.stdout


def check_slurm() -> None:
    """Raise :class:`SlurmError` unless sbatch, squeue and scontrol are there and the controller answers."""
    for name in ("sbatch", "squeue", "scontrol"):
        _tool(name)
    _run([_tool("squeue"), "-h", "-o", "%i", "-u", getpass.getuser()], "squeue (is the SLURM controller up?)")


def sbatch(script: str, options: Sequence[str], what: str) -> str:
    """Submit the job script ``script`` with sbatch ``options``; the job id (array: the array's id)."""
    out = _run([_tool("sbatch"), "--parsable", *options, script], f"sbatch of {what}")
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch of {what} gave no job id (output {out.strip()!r})")
    return job_id


def queue_states(user: Optional[str] = None) -> Dict[str, str]:
    """The user's jobs in the queue: job id (``123`` or array task ``123_4``) -> state (``PENDING``, ...).

    Array tasks not started yet are listed one by one (``squeue -r``).
    """
    out = _run([_tool("squeue"), "-h", "-r", "-u", user or getpass.getuser(), "-o", "%i %T"], "squeue")
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def job_record(job_id: str) -> Dict[str, str]:
    """SLURM's record of a job or array task (``scontrol -o show job``): field -> value; {} once forgotten.

    SLURM keeps ended jobs for ``MinJobAge`` seconds; for array tasks pass ``<array>_<task>``.
    """
    try:
        out = _run([_tool("scontrol"), "-o", "show", "job", job_id], f"scontrol show job {job_id}")
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return {}
        raise
    fields = {}
    for line in out.splitlines()[:1]:
        for item in line.split():
            key, sep, value = item.partition("=")
            if sep:
                fields[key] = value
    return fields


def cancel(job_ids: Sequence[str]) -> None:
    """scancel the given jobs."""
    if job_ids:
        _run([_tool("scancel"), *job_ids], "scancel")
