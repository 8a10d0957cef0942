"""Producer throughput and memory against an h5py read-only baseline, measured in the same run.

On one simulated DSSC run (module 3, 20 frames per train, 200 trains by default):

1. read-only baseline: plain h5py reads of ``image/data`` of the same module and trains,
   in blocks of the producer's batches (whole trains, at most ``batch_size`` frames),
   warm page cache; also extra-data alone (``select_trains`` + ``ndarray`` per batch),
   for information;
2. the producer (``smd_producer`` in a subprocess) on 1 rank for a ROI + projection
   config with XGM (per pulse) and delay (per train) point data: the loop-only rate
   (the final progress line, which counts from the end of the set-up), the end-to-end
   rate (``/meta`` ``elapsed_s``) and the start-up (wall time minus ``elapsed_s``); the
   ratio producer / read-only; 2 ranks (``mpiexec -n 2``) and a larger batch for information;
3. peak memory of one rank (``VmHWM`` at exit) for a short (50 trains) and a long run
   (200 trains) with the same frames per train: it must not grow with the run length;
4. where the time goes: one in-process run with wall-clock timers around the stages
   (reading, calibration, functions, point data, writing), and, when the producer is
   below half the read-only rate, a cProfile of one more run.

Rounds alternate the baselines and the producer so that both see the same machine load.
Generated data are cached in ``$SMALLDATA_BENCH_DIR`` (default ``/tmp/smalldata_bench``).
Writes ``benchmarks/results/producer.json`` and prints a table.

    python benchmarks/bench_producer.py [--trains 200] [--short-trains 50] [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime
import logging
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from smalldata.parallel.mpi import split_batches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    PROPOSAL,
    RESULTS_DIR,
    cpu_pressure,
    evict_files,
    machine_info,
    prepare_runs,
    run_command,
    run_files,
    script_command,
    stats,
    tool,
    write_results,
)
from producer_report import print_report  # noqa: E402
from readonly import DSSC_SOURCE, extra_data_read, h5py_read, h5py_read_plan  # noqa: E402
from stagetimes import breakdown, run_stage_worker  # noqa: E402

log = logging.getLogger("bench_producer")

DATA_RUN, DARK_RUN, SHORT_RUN = 614, 615, 616
PRODUCER_ENTRY = "smalldata.cli.smd_producer:main"
REPO_ROOT = Path(__file__).resolve().parents[1]
ROI = [10, 60, 100, 300]  # y0, y1, x0, x1 (module pixels)
GOAL_RATIO = 0.5
#: Allowed growth of the peak RSS from the short to the long run before it counts as growing.
RSS_TOLERANCE = 0.10
_PROGRESS = re.compile(r"(\d+)/(\d+) frames, (\d+) frames/s")


# ---------------------------------------------------------------------- set-up
def simulation_configs(args) -> Tuple[object, object]:
    """The long and the short run's :class:`SimulationConfig` (same detector, same frames per train)."""
    from smalldata.simulate import SimulationConfig

    common = dict(modules=tuple(args.modules), frames_per_train=args.frames_per_train, sequence_trains=100,
                  dark_trains=100, speckle_module=args.roi_module)
    return (SimulationConfig.small(n_trains=args.trains, **common),
            SimulationConfig.small(n_trains=args.short_trains, **common))


def producer_config(root: Path, work: Path, roi_module: int, batch_size: int) -> Dict:
    """ROI (one module) with a projection child; XGM per pulse and delay per train."""
    return {
        "proposal": PROPOSAL,
        "data_root": str(root),
        "calib_dir": str(work / "calib"),
        "output_dir": str(work / "out"),
        "batch_size": batch_size,
        "detectors": {"dssc": {
            "dark_run": DARK_RUN,
            "gain": 15.0,
            "functions": [{"type": "roi", "name": "roi_a", "module": roi_module, "roi": ROI,
                           "children": [{"type": "projection", "name": "proj", "axis": 0}]}],
        }},
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}},
        },
    }


# ---------------------------------------------------------------------- the producer
def producer_run(config: Path, run: int, output: Path, batch_size: Optional[int], n_ranks: int = 1,
                 max_trains: Optional[int] = None, env: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """Run ``smd_producer`` (under ``mpiexec -n n_ranks`` if more than one rank) and measure it.

    The producer's entry point runs as ``python -c`` under the peak-RSS wrapper of
    :func:`common.script_command` (the same code as the console script).

    Returns
    -------
    dict
        ``frames``, ``wall_s`` (whole command), ``elapsed_s`` (``/meta``: ``run_producer``
        from start to the published file), ``startup_s`` (wall - elapsed: interpreter,
        imports, MPI, config), ``loop_fps`` (final progress line: frames / time since the
        set-up ended), ``loop_s``, ``setup_merge_s`` (elapsed - loop), ``end_to_end_fps``
        (frames / elapsed_s), ``max_rss_mb`` (peak RSS of the largest rank), ``rss_per_rank_mb``.
    """
    args = ["-r", str(run), "-c", str(config), "--output", str(output), "--overwrite"]
    if batch_size is not None:
        args += ["--batch-size", str(batch_size)]
    if max_trains is not None:
        args += ["--max-trains", str(max_trains)]
    rss_prefix = Path(output).with_suffix(".peak_rss")
    cmd = script_command(PRODUCER_ENTRY, args, peak_rss=rss_prefix)
    if n_ranks > 1:
        cmd = [tool("mpiexec"), "-n", str(n_ranks)] + cmd
    result = run_command(cmd, env=env, peak_rss=rss_prefix).check("smd_producer")
    if result.peak_rss_mb:
        rss, rss_source = max(result.peak_rss_mb.values()), "VmHWM per rank"
    else:  # no /proc: wait4, an upper bound (includes the forking process)
        rss, rss_source = result.max_rss_mb, "wait4 ru_maxrss"
    with h5py.File(output, "r") as f:
        frames = int(f["trainId"].shape[0])
        elapsed = float(f["meta"].attrs["elapsed_s"])
    found = _PROGRESS.findall(result.stderr)
    if found and int(found[-1][0]) == frames and int(found[-1][2]) > 0:
        loop_fps, source = float(found[-1][2]), "progress line"
    else:  # progress format changed: fall back to the end-to-end rate
        loop_fps, source = frames / elapsed, "meta elapsed_s"
    loop_s = frames / loop_fps
    return {"frames": frames, "wall_s": result.wall_s, "elapsed_s": elapsed, "startup_s": result.wall_s - elapsed,
            "loop_fps": loop_fps, "loop_s": loop_s, "setup_merge_s": max(elapsed - loop_s, 0.0),
            "end_to_end_fps": frames / elapsed, "max_rss_mb": rss, "rss_per_rank_mb": result.peak_rss_mb,
            "rss_source": rss_source, "loop_rate_source": source}


def imports_only_rss() -> Optional[float]:
    """Peak RSS (MiB) of a Python process that only imports what the producer imports."""
    code = ("import smalldata.cli.smd_producer, smalldata.pipeline.eventloop, smalldata.pipeline.detectors, smalldata.calib.detobject, "
            "smalldata.funcs.roi, smalldata.funcs.projection, extra_data, extra_geom, h5py, mpi4py.MPI\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])")
    result = run_command([sys.executable, "-c", code])
    try:
        return round(int(result.check("imports").stdout.split()[-1]) / 1024.0, 1)
    except (RuntimeError, ValueError, IndexError):
        log.warning("could not measure the RSS of the imports alone: %s", result.stderr.strip()[-200:])
        return None


def summarise_runs(runs: Sequence[Dict[str, float]]) -> Dict[str, object]:
    """Best/median of the rates, median of the times, peak of the RSS over repeated producer runs."""
    def med(key):
        return round(statistics.median(r[key] for r in runs), 3)

    return {
        "frames": runs[0]["frames"],
        "loop_fps": stats([r["loop_fps"] for r in runs]),
        "end_to_end_fps": stats([r["end_to_end_fps"] for r in runs]),
        "startup_s_median": med("startup_s"), "setup_merge_s_median": med("setup_merge_s"),
        "wall_s_median": med("wall_s"),
        "max_rss_mb": round(max(r["max_rss_mb"] for r in runs), 1),
        "rss_source": runs[0]["rss_source"],
        "rss_per_rank_mb": _per_rank_peak(runs),
        "loop_rate_source": runs[0]["loop_rate_source"],
    }


def _per_rank_peak(runs) -> Optional[Dict[str, float]]:
    peaks: Dict[str, float] = {}
    for r in runs:
        for rank, mb in (r["rss_per_rank_mb"] or {}).items():
            peaks[str(rank)] = round(max(peaks.get(str(rank), 0.0), mb), 1)
    return peaks or None


# ---------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=lambda s: [int(v) for v in s.split(",")], default=[3],
                        help="simulated DSSC modules, comma-separated (default 3)")
    parser.add_argument("--roi-module", type=int, default=3, help="module of the ROI (default 3)")
    parser.add_argument("--trains", type=int, default=400, help="trains of the main run (default 400)")
    parser.add_argument("--short-trains", type=int, default=100,
                        help="trains of the short run (default 100: both runs span several batches)")
    parser.add_argument("--frames-per-train", type=int, default=20, help="frames per train (default 20)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="frames per batch (default: the producer's automatic size for the modules read, "
                             "64 MiB of raw data)")
    parser.add_argument("--cold", type=int, default=2,
                        help="rounds with the run's files evicted from the page cache (default 2; 0 = skip)")
    parser.add_argument("--large-batch", type=int, default=200,
                        help="a second, larger batch size measured on one rank (default 200; 0 = skip)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of baseline + 1-rank producer (default 3)")
    parser.add_argument("--ranks", type=int, default=2, help="ranks of the MPI measurement (default 2; 0 = skip)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="cProfile a run: when below the goal (auto), always or never")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "producer.json")
    args = parser.parse_args(argv)
    if args.roi_module not in args.modules:
        parser.error(f"--roi-module {args.roi_module} is not among --modules {args.modules}")
    if args.short_trains >= args.trains:
        parser.error(f"--short-trains {args.short_trains} must be below --trains {args.trains}")
    if args.batch_size is None:
        from smalldata.pipeline.eventloop import auto_batch_size

        args.batch_size = auto_batch_size(64.0, 1)  # the ROI config reads one module
    return args


@dataclass
class Prepared:
    """The cached data and the config of one benchmark run."""

    root: Path
    config: Path
    out_dir: Path
    module_files: List[Path]


def prepare(args) -> Prepared:
    """Simulated runs, dark constants and the producer config (cached); warm page cache."""
    long_cfg, short_cfg = simulation_configs(args)
    prep = prepare_runs("sim", {DATA_RUN: long_cfg, SHORT_RUN: short_cfg}, DARK_RUN, long_cfg, lambda root, work: {
        "producer": producer_config(root, work, args.roi_module, args.batch_size)})
    module_files = run_files(prep.root, DATA_RUN, f"RAW-R{DATA_RUN:04d}-DSSC{args.roi_module:02d}-S*.h5")
    return Prepared(prep.root, prep.configs["producer"], prep.work / "out", module_files)


def measure_rounds(args, prep: Prepared) -> Dict[str, object]:
    """Rounds alternating the h5py and extra-data read-only baselines and the 1-rank producer."""
    from extra_data import RunDirectory

    from smalldata.simulate import run_path

    plan = h5py_read_plan(prep.module_files, args.roi_module, args.batch_size)
    ed_run = RunDirectory(str(run_path(prep.root, PROPOSAL, DATA_RUN)))
    src = DSSC_SOURCE.format(m=args.roi_module)
    counts = np.asarray(ed_run[src, "image.data"].data_counts(labelled=False), dtype=np.int64)
    tids = np.asarray(ed_run.train_ids, dtype=np.uint64)
    train_blocks = [tids[a:b] for a, b in split_batches(counts, args.batch_size)]
    # untimed warm-up of all three paths (imports, HDF5 metadata caches)
    producer_run(prep.config, DATA_RUN, prep.out_dir / "warmup.h5", args.batch_size, max_trains=10)
    h5py_read(plan, args.roi_module)
    extra_data_read(ed_run, args.roi_module, train_blocks)

    h5_fps, ed_fps, runs = [], [], []
    for r in range(args.repeat):
        n, dt = h5py_read(plan, args.roi_module)
        h5_fps.append(n / dt)
        n_ed, dt_ed = extra_data_read(ed_run, args.roi_module, train_blocks)
        ed_fps.append(n_ed / dt_ed)
        runs.append(producer_run(prep.config, DATA_RUN, prep.out_dir / "r1.h5", args.batch_size))
        log.info("round %d: h5py %.0f, extra-data %.0f, producer loop %.0f frames/s (1 rank)", r + 1,
                 h5_fps[-1], ed_fps[-1], runs[-1]["loop_fps"])
        if not n == n_ed == runs[-1]["frames"]:
            raise RuntimeError(f"frames differ: h5py {n}, extra-data {n_ed}, producer rows {runs[-1]['frames']}")
    return {"read_only": {"h5py_fps": stats(h5_fps), "extra_data_fps": stats(ed_fps)}, "runs": runs}


def measure_cold(args, prep: Prepared) -> Optional[Dict[str, object]]:
    """h5py and the 1-rank producer with the run's files evicted from the page cache before each read.

    Real runs are read from disk (GPFS at the facility), not from memory: this is the
    comparison that decides how long a user waits.
    """
    if not args.cold:
        return None
    files = run_files(prep.root, DATA_RUN)
    plan = h5py_read_plan(prep.module_files, args.roi_module, args.batch_size)
    h5_fps, runs = [], []
    for r in range(args.cold):
        evict_files(files)
        n, dt = h5py_read(plan, args.roi_module)
        h5_fps.append(n / dt)
        evict_files(files)
        runs.append(producer_run(prep.config, DATA_RUN, prep.out_dir / "r1_cold.h5", args.batch_size))
        log.info("cold round %d: h5py %.0f, producer loop %.0f frames/s", r + 1, h5_fps[-1], runs[-1]["loop_fps"])
    cold = {"h5py_fps": stats(h5_fps), **summarise_runs(runs)}
    cold["ratio_loop_best"] = round(cold["loop_fps"]["best"] / cold["h5py_fps"]["best"], 4)
    cold["ratio_loop_median"] = round(cold["loop_fps"]["median"] / cold["h5py_fps"]["median"], 4)
    return cold


def measure_large_batch(args, prep: Prepared) -> Optional[Dict[str, object]]:
    """h5py and the 1-rank producer with ``--large-batch`` frames per batch (two rounds)."""
    if not args.large_batch:
        return None
    plan = h5py_read_plan(prep.module_files, args.roi_module, args.large_batch)
    runs, h5_fps = [], []
    for _ in range(2):
        n, dt = h5py_read(plan, args.roi_module)
        h5_fps.append(n / dt)
        runs.append(producer_run(prep.config, DATA_RUN, prep.out_dir / "r1_large.h5", args.large_batch))
    large = {"batch_size": args.large_batch, "h5py_fps": stats(h5_fps), **summarise_runs(runs)}
    large["ratio_loop_best"] = round(large["loop_fps"]["best"] / large["h5py_fps"]["best"], 4)
    return large


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()
    machine = machine_info()
    machine["cpu_pressure_some_avg60_at_start"] = cpu_pressure()
    prep = prepare(args)

    rounds = measure_rounds(args, prep)
    large = measure_large_batch(args, prep)
    cold = measure_cold(args, prep)
    multi = None
    if args.ranks > 1:
        multi_runs = [producer_run(prep.config, DATA_RUN, prep.out_dir / "rN.h5", args.batch_size,
                                   n_ranks=args.ranks) for _ in range(2)]
        multi = {"ranks": args.ranks, **summarise_runs(multi_runs)}
        multi["ratio_loop_best"] = round(multi["loop_fps"]["best"] / rounds["read_only"]["h5py_fps"]["best"], 4)
    short_runs = [producer_run(prep.config, SHORT_RUN, prep.out_dir / "short.h5", args.batch_size)
                  for _ in range(2)]

    read_only, producer = rounds["read_only"], summarise_runs(rounds["runs"])
    rss_short = max(r["max_rss_mb"] for r in short_runs)
    rss_long = producer["max_rss_mb"]
    ratio_best = producer["loop_fps"]["best"] / read_only["h5py_fps"]["best"]
    ratio_median = producer["loop_fps"]["median"] / read_only["h5py_fps"]["median"]
    goal_met = ratio_best >= GOAL_RATIO
    memory_bounded = rss_long <= rss_short * (1 + RSS_TOLERANCE)

    stage = run_stage_worker(prep.config, DATA_RUN, args.batch_size, prep.out_dir / "stages.h5", cprofile=False)
    profile = {"stage_run_wall_s": round(stage["wall_s"], 3),
               "stage_run_fps": round(stage["frames"] / stage["wall_s"], 1),
               "not_instrumented": stage["missing"],
               "stages": breakdown(stage, stage["frames"])}
    if args.profile == "always" or (args.profile == "auto" and not goal_met):
        prof = run_stage_worker(prep.config, DATA_RUN, args.batch_size, prep.out_dir / "profile.h5", cprofile=True)
        profile["cprofile_wall_s"] = round(prof["wall_s"], 3)
        profile["cprofile_top_tottime"] = prof["cprofile_top_tottime"]

    report = {
        "benchmark": "producer",
        "what": "smd_producer (subprocess, 1 rank) on a simulated DSSC run, ROI + projection on one module, "
                "XGM per pulse and delay per train, against plain h5py reads of the same module's image/data "
                "in the same batches (warm page cache), rounds alternating; loop-only rate from the final "
                "progress line; peak RSS = VmHWM of each rank",
        "goal": f"1-rank producer loop rate >= {GOAL_RATIO} x h5py read-only rate; peak RSS not growing with "
                f"the run length (long <= short x {1 + RSS_TOLERANCE})",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "data": {"modules_simulated": list(args.modules), "roi_module": args.roi_module, "roi": ROI,
                 "frames_per_train": args.frames_per_train, "trains": args.trains,
                 "short_trains": args.short_trains, "frame_bytes": 128 * 512 * 2,
                 "batch_size": args.batch_size, "repeat": args.repeat},
        "read_only": read_only,
        "producer_1_rank": producer,
        "ratio_loop_fps_best": round(ratio_best, 4),
        "ratio_loop_fps_median": round(ratio_median, 4),
        "ratio_end_to_end_best": round(producer["end_to_end_fps"]["best"] / read_only["h5py_fps"]["best"], 4),
        "producer_large_batch_1_rank": large,
        "producer_cold_1_rank": cold,
        "goal_met_cold": bool(cold and cold["ratio_loop_best"] >= GOAL_RATIO),
        "producer_n_ranks": multi,
        "memory": {"max_rss_mb_short": round(rss_short, 1), "max_rss_mb_long": round(rss_long, 1),
                   "max_rss_mb_imports_only": imports_only_rss(),
                   "short_trains": args.short_trains, "long_trains": args.trains,
                   "max_rss_mb_per_rank_n_ranks": multi["rss_per_rank_mb"] if multi else None},
        "goal_met": goal_met,
        "memory_bounded": memory_bounded,
        "profile": profile,
    }
    report["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["cpu_pressure_some_avg60_at_end"] = cpu_pressure()
    path = write_results(report, args.output)
    print_report(report, GOAL_RATIO)
    log.info("wrote %s (%.0f s)", path, report["bench_wall_s"])
    return 0 if goal_met and memory_bounded else 1


if __name__ == "__main__":
    raise SystemExit(main())
