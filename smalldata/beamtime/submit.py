"""Submitting a range of runs to SLURM: one array task per run, the darks first, skipping what is done.

:func:`plan_submission` checks the input (runs exist, SLURM answers, the output folder is ours)
and decides per run: skip (done with the current fingerprint, or already queued or running) or
process; :func:`submit` writes the job script, submits the dark jobs and the array (which waits
for them), and records every run's job in the :class:`~smalldata.beamtime.jobstate.JobRecord`.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from smalldata.beamtime.fingerprint import config_fingerprint
from smalldata.beamtime.jobstate import TO_PROCESS, JobRecord, RunState, now_iso, run_states, state_dir
from smalldata.beamtime import slurm
from smalldata.beamtime.runrange import format_run_range
from smalldata.errors import DataError, SmallDataError

log = logging.getLogger(__name__)


@dataclass
class SubmitOptions:
    """How the jobs run.

    Attributes
    ----------
    ranks : int
        MPI ranks (SLURM tasks) per run.
    partition, reservation : str or None
        SLURM partition (e.g. ``upex``) or reservation (e.g. ``upex_002937``).
    max_concurrent : int or None
        Array tasks running at once (``--array=...%K``).
    time_limit : str or None
        SLURM time limit per run (``--time``), e.g. ``2:00:00``.
    wait_data : float
        Seconds each job waits for its run's files to be complete (``smd_producer --wait``).
    force : bool
        Process every run of the range again, done or not (not those queued or running).
    """

    ranks: int = 1
    partition: Optional[str] = None
    reservation: Optional[str] = None
    max_concurrent: Optional[int] = None
    time_limit: Optional[str] = None
    wait_data: float = 3600.0
    force: bool = False


@dataclass
class Plan:
    """What a submit does: runs to process, runs skipped with why, darks to characterise first."""

    proposal: int
    states: List[RunState]
    process: List[int] = field(default_factory=list)
    skipped: Dict[int, str] = field(default_factory=dict)
    darks: Dict[str, int] = field(default_factory=dict)
    fingerprint: Optional[str] = None


def tool_path(name: str) -> str:
    """A console script of this environment (the job runs the same installation as the submit)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def check_runs_exist(proposal: int, runs: List[int], data_root: Optional[str]) -> None:
    """:class:`DataError` naming the runs of ``runs`` that have no raw directory, with the runs there are."""
    from smalldata.io.runaccess import find_run_directory

    missing = []
    for run in runs:
        try:
            find_run_directory(proposal, run, data_root)
        except DataError:
            missing.append(run)
    if missing:
        root = Path(data_root) if data_root else Path(os.environ.get("EXTRA_DATA_DATA_ROOT", "."))
        there = sorted(int(p.name[1:]) for p in root.glob(f"*/*/p{proposal:06d}/raw/r[0-9]*") if p.is_dir()
                       and p.name[1:].isdigit())
        hint = f"runs there: {format_run_range(there)}" if there else f"no runs of proposal {proposal} there"
        raise DataError(f"run(s) {format_run_range(missing)} of proposal {proposal} do not exist under {root} "
                        f"({hint}); check -r and -p, or the config's data_root")


def check_output_folder(output_dir: Path, runs: List[int]) -> None:
    """Refuse an output folder we cannot write, or where another user's job is writing a run of ``runs``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise SmallDataError(f"output folder {output_dir} is not writable for you; set output_dir in the config "
                             "to a folder of yours")
    me = os.getuid()
    for run in runs:
        for tmp in sorted(output_dir.glob(f".r{run:04d}.h5.*")):
            try:
                owner = tmp.stat().st_uid
            except FileNotFoundError:
                continue
            if owner != me:
                raise SmallDataError(f"output folder {output_dir}: run {run} is being written by user "
                                     f"{_user_name(owner)}'s job ({tmp.name}); set another output_dir in the "
                                     "config, or wait until that job ends")
    record = JobRecord(output_dir).path
    if record.is_file() and record.stat().st_uid != me:
        raise SmallDataError(f"output folder {output_dir} holds the submissions of user "
                             f"{_user_name(record.stat().st_uid)} ({record}); set another output_dir in the config")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def plan_submission(config, proposal: int, runs: List[int], options: SubmitOptions) -> Plan:
    """Check the input and decide, per run, whether to process it (see the module docstring)."""
    from smalldata.calib.dark import dark_file_path

    data_root = config.settings["data_root"]
    check_runs_exist(proposal, runs, data_root)
    output_dir = Path(config.settings["output_dir"])
    check_output_folder(output_dir, runs)
    slurm.check_slurm()
    darks = {}
    for name, det in config.detectors.items():
        if not dark_file_path(config.settings["calib_dir"], proposal, det["dark_run"], name).is_file():
            check_runs_exist(proposal, [det["dark_run"]], data_root)
            darks[name] = int(det["dark_run"])
    current = config_fingerprint(config, proposal)
    states = run_states(runs, output_dir, current, slurm.queue_states())
    plan = Plan(proposal, states, darks=darks, fingerprint=current)
    for st in states:
        if st.state in ("queued", "running"):
            plan.skipped[st.run] = f"{st.state} (job {st.job})"
        elif st.state in TO_PROCESS or options.force:
            plan.process.append(st.run)
        else:
            plan.skipped[st.run] = "done with the same config and dark"
    return plan


def job_script(config_path: Path, proposal: int, runs: List[int], options: SubmitOptions) -> str:
    """The bash script of the array: task i processes ``runs[i]`` under MPI."""
    producer = shlex.join([tool_path("mpiexec"), "-n", str(options.ranks), tool_path("smd_producer"),
                           "-p", str(proposal), "-c", str(config_path), "--overwrite",
                           "--wait", f"{options.wait_data:g}"])
    return "\n".join([
        "#!/bin/bash",
        "# written by smd_submit: task i of the array processes the i-th run of RUNS",
        "set -uo pipefail",
        f"RUNS=({' '.join(str(r) for r in runs)})",
        'RUN=${RUNS[$SLURM_ARRAY_TASK_ID]}',
        f'echo "smd_submit: run $RUN of proposal {proposal}, task $SLURM_ARRAY_TASK_ID of job '
        '$SLURM_ARRAY_JOB_ID on $(hostname), $(date -u +%FT%TZ)"',
        f'exec {producer} -r "$RUN"',
        ""])


def dark_script(config_path: Path, proposal: int, run: int, detector: str, options: SubmitOptions) -> str:
    """The bash script of a dark job (smd_dark of one detector's dark run)."""
    dark = shlex.join([tool_path("mpiexec"), "-n", str(options.ranks), tool_path("smd_dark"), "-p", str(proposal),
                       "-r", str(run), "-c", str(config_path), "--detector", detector, "--quiet"])
    return "\n".join(["#!/bin/bash", "# written by smd_submit: the dark constants the runs need", "set -uo pipefail",
                      f'echo "smd_submit: dark run {run} of proposal {proposal} ({detector}) on $(hostname)"',
                      f"exec {dark}", ""])


def _common_options(options: SubmitOptions) -> List[str]:
    out = ["--ntasks", str(options.ranks)]
    if options.partition:
        out += ["--partition", options.partition]
    if options.reservation:
        out += ["--reservation", options.reservation]
    if options.time_limit:
        out += ["--time", options.time_limit]
    return out


def submit(config, plan: Plan, options: SubmitOptions) -> Optional[str]:
    """Submit the darks and the array of ``plan.process``; the array's job id (None: nothing to do)."""
    if not plan.process:
        return None
    folder = state_dir(config.settings["output_dir"])
    (folder / "scripts").mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"_{os.getpid()}"
    dark_jobs: Dict[int, str] = {}
    recorded = JobRecord(config.settings["output_dir"]).read()["darks"]
    queue = slurm.queue_states()
    for name, run in plan.darks.items():
        earlier = recorded.get(str(run), {}).get("job", "")
        if queue.get(earlier) in slurm.ACTIVE_STATES:  # an earlier submit's dark job is still to come
            dark_jobs[run] = earlier
            continue
        script = folder / "scripts" / f"dark_r{run:04d}_{name}_{stamp}.sh"
        script.write_text(dark_script(config.path, plan.proposal, run, name, options))
        log_path = folder / "logs" / f"dark_r{run:04d}_{name}_%j.log"
        job = slurm.sbatch(str(script), _common_options(options) + [
            "--job-name", f"smd_dark_p{plan.proposal}_r{run}", "--output", str(log_path)], f"dark run {run}")
        dark_jobs[run] = job
        with JobRecord(config.settings["output_dir"]).update() as record:
            record["darks"][str(run)] = {"job": job, "log": str(log_path).replace("%j", job),
                                         "submitted": now_iso()}
    script = folder / "scripts" / f"runs_{stamp}.sh"
    script.write_text(job_script(config.path, plan.proposal, plan.process, options))
    array = f"0-{len(plan.process) - 1}" + (f"%{options.max_concurrent}" if options.max_concurrent else "")
    sbatch_options = _common_options(options) + [
        "--job-name", f"smd_p{plan.proposal}", "--array", array,
        "--output", str(folder / "logs" / "run_%A_%a.log")]
    if dark_jobs:
        sbatch_options += ["--dependency", "afterok:" + ":".join(dark_jobs.values()), "--kill-on-invalid-dep=yes"]
    job = slurm.sbatch(str(script), sbatch_options, f"runs {format_run_range(plan.process)}")
    dark_runs = {int(config.detectors[name]["dark_run"]) for name in config.detectors}
    with JobRecord(config.settings["output_dir"]).update() as record:
        for i, run in enumerate(plan.process):
            record["runs"][str(run)] = {
                "job": f"{job}_{i}", "array": job, "fingerprint": plan.fingerprint,
                "log": str(folder / "logs" / f"run_{job}_{i}.log"), "submitted": now_iso(),
                "dark_run": sorted(dark_runs)[0] if dark_runs else None,
                "dark_job": ",".join(dark_jobs[r] for r in sorted(dark_jobs)) or None}
    log.info("submitted runs %s as array job %s (%d task(s))", format_run_range(plan.process), job,
             len(plan.process))
    return job


def wait_for_jobs(job_ids: List[str], poll: float = 2.0, timeout: Optional[float] = None) -> None:
    """Return once none of ``job_ids`` (arrays included) is in SLURM's queue any more."""
    start = time.monotonic()
    wanted = set(job_ids)
    while True:
        active = {j.split("_")[0] for j, state in slurm.queue_states().items() if state in slurm.ACTIVE_STATES}
        if not wanted & active:
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise slurm.SlurmError(f"jobs {', '.join(sorted(wanted & active))} still in the queue after "
                                   f"{timeout:g} s; see their state with smd_submit --status")
        time.sleep(poll)
