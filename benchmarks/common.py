"""Shared helpers of the benchmarks: simulated runs, dark constants, configs, timing, results.

Everything a benchmark needs besides its own measurement:

- :func:`bench_dir`: where generated data are cached (``$SMALLDATA_BENCH_DIR``, default
  ``/tmp/smalldata_bench``; never inside the repository);
- :func:`simulated_run`: a simulated run of a given size, written once and reused;
- :func:`dark_constants`: the dark constants of a simulated dark run (``smd_dark`` in a
  subprocess, written once and reused);
- :func:`write_config`: a producer YAML config;
- :func:`run_command`: a subprocess with its wall time and its peak memory (max RSS);
- :func:`warm_files`, :func:`repeat_timings`, :func:`stats`: page cache and repeats;
- :func:`machine_info`, :func:`write_results`, :func:`format_table`: the report.

The benchmark process itself never initialises MPI: whatever needs it runs in a
subprocess (``smd_dark``, ``smd_producer``, ``mpiexec``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
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
    from smalldata.darkfile import dark_file_path

    path = dark_file_path(calib_dir, PROPOSAL, dark_run, "dssc")
    if path.is_file():
        log.info("reusing dark constants %s", path)
        return path
    result = run_command([tool("smd_dark"), "-r", str(dark_run), "-c", str(config_path), "--quiet"])
    result.check("smd_dark")
    log.info("dark constants %s made in %.1f s", path, result.wall_s)
    return path


# ---------------------------------------------------------------------- running and timing
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
        Peak resident memory (MiB) of the largest process of the command's process tree
        (the command itself or any descendant it waited for), from ``wait4``.
    stdout, stderr : str
    """

    args: List[str]
    returncode: int
    wall_s: float
    max_rss_mb: float
    stdout: str
    stderr: str

    def check(self, what: str) -> "CommandResult":
        """Raise RuntimeError with the command's stderr tail if it failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{what} failed with status {self.returncode}: {' '.join(self.args)}\n{tail}")
        return self


def run_command(args: Sequence[str], env: Optional[Mapping[str, str]] = None,
                cwd: Optional[Path] = None) -> CommandResult:
    """Run a command to completion; measure its wall time and peak RSS.

    The peak RSS comes from ``os.wait4`` on the child: Linux reports the largest
    ``ru_maxrss`` of the child and of every descendant it reaped, so under ``mpiexec``
    it is the peak of the largest rank (or of the launcher, whichever is larger). The
    output goes to temporary files, so a chatty child cannot block on a full pipe.
    """
    args = [str(a) for a in args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=full_env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return CommandResult(args, proc.returncode, wall, usage.ru_maxrss / 1024.0, out.read(), err.read())


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


def repeat_timings(fn: Callable[[], object], repeat: int) -> List[float]:
    """Wall times (seconds) of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def stats(values: Sequence[float], higher_is_better: bool = True) -> Dict[str, float]:
    """``{"best", "median", "all"}`` of repeated measurements."""
    values = [float(v) for v in values]
    best = max(values) if higher_is_better else min(values)
    return {"best": best, "median": float(statistics.median(values)), "all": [round(v, 4) for v in values]}


# ---------------------------------------------------------------------- report
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> Optional[float]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> Dict[str, object]:
    """The machine and the versions that matter for the figures."""
    import h5py
    import numpy

    info = {"nproc": os.cpu_count(), "cpu_model": _cpu_model(), "mem_total_gb": _mem_total_gb(),
            "python": platform.python_version(), "numpy": numpy.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version, "platform": platform.platform()}
    try:
        import extra_data

        info["extra_data"] = extra_data.__version__
    except ImportError:
        pass
    try:
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def write_results(report: Mapping, path: Path) -> Path:
    """Write ``report`` as JSON to ``path`` (e.g. ``RESULTS_DIR / "producer.json"``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain-text table (left-aligned first column, right-aligned others)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
