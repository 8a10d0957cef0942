"""Shared helpers of the benchmarks: simulated runs, dark constants, configs, timing, results.

Everything a benchmark needs besides its own measurement:

- :func:`bench_dir`: where generated data are cached (``$SMALLDATA_BENCH_DIR``, default
  ``/tmp/smalldata_bench``; never inside the repository);
- :func:`simulated_run`: a simulated run of a given size, written once and reused;
- :func:`dark_constants`: the dark constants of a simulated dark run (``smd_dark`` in a
  subprocess, written once and reused);
- :func:`write_config`: a producer YAML config;
- :func:`prepare_runs`: all of these for one benchmark (its runs, configs and dark constants);
- :func:`run_command`: a subprocess with its wall time and its peak memory (max RSS);
- :func:`warm_files`, :func:`repeat_timings`, :func:`stats`: page cache and repeats;
- :func:`machine_info`, :func:`cpu_pressure`, :func:`write_results`, :func:`format_table`: the report
  (from :mod:`reporting`).

The benchmark process itself never initialises MPI: whatever needs it runs in a
subprocess (``smd_dark``, ``smd_producer``, ``mpiexec``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import yaml

from reporting import cpu_pressure, format_table, machine_info, write_results  # noqa: F401 (the benchmarks' imports)

log = logging.getLogger("benchmarks.common")

#: Folder of the committed results (``benchmarks/results``).
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Default cache of generated data, outside the repository.
DEFAULT_BENCH_DIR = Path(tempfile.gettempdir()) / "smalldata_bench"
PROPOSAL = 2937


# ---------------------------------------------------------------------- places and tools
def bench_dir() -> Path:
    """The cache folder of generated data: ``$SMALLDATA_BENCH_DIR`` or ``/tmp/smalldata_bench``."""
    path = Path(os.environ.get("SMALLDATA_BENCH_DIR") or DEFAULT_BENCH_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def tool(name: str) -> str:
    """Path of a console script of this environment (next to the running Python, else on PATH).

    Raises
    ------
    FileNotFoundError
        The script is not installed.
    """
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed in {Path(sys.executable).parent} nor on PATH; "
                                "install the project (pip install -e .)")
    return found


# ---------------------------------------------------------------------- simulated data
def cache_key(payload: str) -> str:
    """A short hash of ``payload`` (names cache folders)."""
    return hashlib.sha1(payload.encode()).hexdigest()[:10]


def simulated_run(sim_config, run: int, dark: bool = False, root: Optional[Path] = None) -> Path:
    """A simulated run of ``sim_config``, generated once and then reused from the cache.

    Parameters
    ----------
    sim_config : smalldata.simulate.SimulationConfig
        The simulation parameters; runs with different parameters go to different roots.
    run : int
        Run number.
    dark : bool
        Write a dark run (``sim_config.dark_trains`` trains, no X-rays) instead of a data run.
    root : Path, optional
        Data root; default ``bench_dir()/sim_<hash of the parameters>``.

    Returns
    -------
    Path
        The data root (``EXTRA_DATA_DATA_ROOT``) holding the run.

    Notes
    -----
    The simulator writes the truth file last, so an existing truth file marks a complete run.
    """
    from smalldata.simulate import simulate_dark_run, simulate_data_run, truth_path

    if root is None:
        root = bench_dir() / f"sim_{cache_key(sim_config.to_json())}"
    root = Path(root)
    if truth_path(root, PROPOSAL, run).is_file():
        log.info("reusing simulated %s run %d under %s", "dark" if dark else "data", run, root)
        return root
    t0 = time.perf_counter()
    writer = simulate_dark_run if dark else simulate_data_run
    writer(root, PROPOSAL, run, sim_config, overwrite=True)
    log.info("simulated %s run %d under %s in %.1f s", "dark" if dark else "data", run, root,
             time.perf_counter() - t0)
    return root


def run_files(root: Path, run: int, pattern: str = "*.h5") -> List[Path]:
    """The raw files of ``run`` under ``root`` matching ``pattern``, sorted."""
    from smalldata.simulate import run_path

    return sorted(Path(run_path(root, PROPOSAL, run)).glob(pattern))


def write_config(path: Path, config: Mapping) -> Path:
    """Write a producer config (a mapping) as YAML to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def dark_constants(config_path: Path, dark_run: int, calib_dir: Path) -> Path:
    """Dark constants of ``dark_run`` made with ``smd_dark -c config_path`` (once; then reused).

    Returns
    -------
    Path
        The constants file in ``calib_dir``.
    """
    from smalldata.calib.darkfile import dark_file_path

    path = dark_file_path(calib_dir, PROPOSAL, dark_run, "dssc")
    if path.is_file():
        log.info("reusing dark constants %s", path)
        return path
    result = run_command([tool("smd_dark"), "-r", str(dark_run), "-c", str(config_path), "--quiet"])
    result.check("smd_dark")
    log.info("dark constants %s made in %.1f s", path, result.wall_s)
    return path



@dataclass
class PreparedRuns:
    """What :func:`prepare_runs` made: data root, work folder (configs, ``calib/``, ``out/``), configs, dark file."""

    root: Path
    work: Path
    configs: Dict[str, Path]
    dark: Path


def prepare_runs(name: str, runs: Mapping[int, object], dark_run: int, dark_sim,
                 configs: Callable[[Path, Path], Mapping[str, Mapping]], warm: bool = True) -> PreparedRuns:
    """Simulated runs, producer configs and dark constants of a benchmark (made once, then reused).

    Parameters
    ----------
    name : str
        Cache folder ``bench_dir()/<name>_<hash of the simulation configs>`` (the data root).
    runs : mapping of int to SimulationConfig
        Data runs to simulate.
    dark_run : int
    dark_sim : SimulationConfig
        Simulation config of the dark run.
    configs : callable
        ``configs(root, work)`` -> ``{name: config}``, written to ``<work>/<name>.yaml``; the
        first one makes the dark constants (``smd_dark``, in ``<work>/calib``).
    warm : bool
        Read the data runs' files and the dark constants once, into the page cache.
    """
    root = bench_dir() / f"{name}_{cache_key(''.join(s.to_json() for s in (dark_sim, *runs.values())))}"
    simulated_run(dark_sim, dark_run, dark=True, root=root)
    for run, sim in runs.items():
        simulated_run(sim, run, root=root)
    work = root / "work"
    paths = {key: write_config(work / f"{key}.yaml", cfg) for key, cfg in configs(root, work).items()}
    dark = dark_constants(next(iter(paths.values())), dark_run, work / "calib")
    (work / "out").mkdir(parents=True, exist_ok=True)
    if warm:
        files = [f for run in runs for f in run_files(root, run)] + [dark]
        log.info("warmed %.0f MB of files", warm_files(files) / 2**20)
    return PreparedRuns(root, work, paths, dark)

# ---------------------------------------------------------------------- running and timing
#: ``python -c`` program that runs a console script's ``main`` and, at exit, writes the
#: process's own peak RSS (``VmHWM`` of /proc/self/status, kB) to ``<prefix>.<rank>.<pid>``
#: (the pid because a rank under an MPI launcher is a supervising parent and the forked child
#: that does the work, and both exit through here). argv: prefix, "module:function", then the
#: script's arguments.
_PEAK_RSS_WRAPPER = """
import atexit, importlib, os, sys
prefix, target = sys.argv[1], sys.argv[2]
module, func = target.split(":")
sys.argv = [module.rsplit(".", 1)[-1]] + sys.argv[3:]
def _write_peak():
    rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or "0"
    with open("/proc/self/status") as fh:
        kb = [line.split()[1] for line in fh if line.startswith("VmHWM:")][0]
    with open(prefix + "." + rank + "." + str(os.getpid()), "w") as out:
        out.write(kb)
atexit.register(_write_peak)
sys.exit(getattr(importlib.import_module(module), func)())
"""


@dataclass
class CommandResult:
    """What :func:`run_command` observed.

    Attributes
    ----------
    args : list of str
        The command.
    returncode : int
    wall_s : float
        Wall time from start to exit, seconds.
    max_rss_mb : float
        Peak resident memory (MiB) from ``wait4``: the largest ``ru_maxrss`` of the child
        and its reaped descendants. On Linux it includes the image of the process that
        forked it (this benchmark process), so it is an upper bound; prefer
        ``peak_rss_mb``.
    peak_rss_mb : dict or None
        ``{rank: MiB}``, each rank's own peak RSS (``VmHWM`` at exit; of a supervised rank, the
        larger of the supervisor and its child), when the command was started through
        :func:`script_command` with ``peak_rss``.
    stdout, stderr : str
    """

    args: List[str]
    returncode: int
    wall_s: float
    max_rss_mb: float
    stdout: str
    stderr: str
    peak_rss_mb: Optional[Dict[int, float]] = None

    def check(self, what: str) -> "CommandResult":
        """Raise RuntimeError with the command's stderr tail if it failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{what} failed with status {self.returncode}: {' '.join(self.args)}\n{tail}")
        return self


def script_command(entry_point: str, args: Sequence[str], peak_rss: Optional[Path] = None) -> List[str]:
    """The command running a console script's entry point (``"package.module:function"``).

    With ``peak_rss`` (a file prefix), it runs under a tiny wrapper that writes each
    process's own peak RSS to ``<peak_rss>.<rank>.<pid>`` at exit (Linux ``/proc``); without,
    it is ``python -c`` importing and calling the entry point, like the console script.
    """
    if peak_rss is not None:
        return [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(peak_rss), entry_point] + [str(a) for a in args]
    module, func = entry_point.split(":")
    code = f"import sys; sys.argv[0] = {module.rsplit('.', 1)[-1]!r}; from {module} import {func}; sys.exit({func}())"
    return [sys.executable, "-c", code] + [str(a) for a in args]


def run_command(args: Sequence[str], env: Optional[Mapping[str, str]] = None,
                cwd: Optional[Path] = None, peak_rss: Optional[Path] = None) -> CommandResult:
    """Run a command to completion; measure its wall time and peak RSS.

    Parameters
    ----------
    args : sequence of str
        The command.
    env : mapping, optional
        Extra environment variables.
    cwd : Path, optional
        Working directory.
    peak_rss : Path, optional
        The prefix given to :func:`script_command`: its per-rank files are read into
        ``peak_rss_mb`` and removed.

    Notes
    -----
    The output goes to temporary files, so a chatty child cannot block on a full pipe.
    """
    args = [str(a) for a in args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if peak_rss is not None:
        for old in Path(peak_rss).parent.glob(Path(peak_rss).name + ".*"):
            old.unlink()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=full_env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = CommandResult(args, proc.returncode, wall, usage.ru_maxrss / 1024.0, out.read(), err.read())
    if peak_rss is not None:
        peaks = {}
        for f in Path(peak_rss).parent.glob(Path(peak_rss).name + ".*"):
            rank = int(f.name[len(Path(peak_rss).name) + 1:].split(".")[0])
            peaks[rank] = max(peaks.get(rank, 0.0), int(f.read_text()) / 1024.0)
            f.unlink()
        result.peak_rss_mb = dict(sorted(peaks.items())) or None
    return result


def warm_files(paths: Sequence[Path], block: int = 16 << 20) -> int:
    """Read every file once (into the page cache); returns the bytes read."""
    total = 0
    buf = bytearray(block)
    view = memoryview(buf)
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while True:
                n = fh.readinto(view)
                if not n:
                    break
                total += n
    return total


def evict_files(paths: Sequence[Path]) -> None:
    """Drop the files' pages from the page cache (posix_fadvise DONTNEED), so the next read hits the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def repeat_timings(fn: Callable[[], object], repeat: int) -> List[float]:
    """Wall times (seconds) of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def stats(values: Sequence[float], higher_is_better: bool = True) -> Dict[str, float]:
    """``{"best", "median", "all"}`` of repeated measurements (5 significant digits)."""
    values = [float(f"{float(v):.5g}") for v in values]
    best = max(values) if higher_is_better else min(values)
    return {"best": best, "median": float(f"{statistics.median(values):.5g}"), "all": values}
