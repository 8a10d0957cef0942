"""Where a producer run's time goes: wall-clock timers around its stages, and cProfile.

:func:`run_stage_worker` runs the producer in-process in a subprocess (MPI stays out of
the benchmark's process) with :class:`StageTimer` wrapped around reading, calibration,
functions, point data and writing; :func:`breakdown` turns the result into a table.
Used by ``bench_producer.py``; ``python benchmarks/stagetimes.py CONFIG --run N ...``
is the worker.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import h5py

from common import run_command

REPO_ROOT = Path(__file__).resolve().parents[1]


class StageTimer:
    """Wall-clock timers around named stages, nested: each stage's exclusive time per call path."""

    def __init__(self):
        self.stack: List[str] = []
        self.exclusive: Dict[Tuple[str, ...], float] = {}
        self.calls: Dict[Tuple[str, ...], int] = {}
        self._child_time: List[float] = []
        self.wrapped: List[str] = []
        self.missing: List[str] = []

    def wrap(self, owner, attr: str, label: str, where: str) -> None:
        """Replace ``owner.attr`` by a timed version (skipped, and noted, if it does not exist)."""
        original = getattr(owner, attr, None)
        if original is None:
            self.missing.append(where)
            return
        timer = self

        def timed(*args, **kwargs):
            if timer.stack and timer.stack[-1] == label:  # recursion (function children): one stage
                return original(*args, **kwargs)
            timer.stack.append(label)
            timer._child_time.append(0.0)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                path = tuple(timer.stack)
                children = timer._child_time.pop()
                timer.stack.pop()
                timer.exclusive[path] = timer.exclusive.get(path, 0.0) + spent - children
                timer.calls[path] = timer.calls.get(path, 0) + 1
                if timer._child_time:
                    timer._child_time[-1] += spent

        setattr(owner, attr, timed)
        self.wrapped.append(where)


def _instrument(timer: StageTimer) -> None:
    import smalldata.calib.detobject as detobject
    import smalldata.io.pointdata as pointdata
    import smalldata.io.runaccess as runaccess
    import smalldata.output.writer as writer
    import smalldata.pipeline.eventloop as eventloop
    import smalldata.plugin.detfunc as detfunc

    targets = [
        (eventloop, "run_producer", "run_producer", "smalldata.pipeline.eventloop.run_producer"),
        (eventloop, "_process_block", "event loop", "smalldata.pipeline.eventloop._process_block"),
        (eventloop, "_write_output", "merge parts + metadata", "smalldata.pipeline.eventloop._write_output"),
        (eventloop, "setup_detectors", "set up detectors (dark, geometry, functions)",
         "smalldata.pipeline.eventloop.setup_detectors"),
        (runaccess.RunAccess, "open", "open run (extra-data)", "smalldata.io.runaccess.RunAccess.open"),
        (runaccess.RunAccess, "read_raw", "read detector frames (RunAccess.read_raw)",
         "smalldata.io.runaccess.RunAccess.read_raw"),
        (h5py.Dataset, "read_direct", "HDF5 read_direct", "h5py.Dataset.read_direct"),
        (detobject.DetObject, "calibrate", "calibrate (DetObject.calibrate)",
         "smalldata.calib.detobject.DetObject.calibrate"),
        (detfunc.DetObjectFunc, "run", "functions (ROI + projection)", "smalldata.plugin.detfunc.DetObjectFunc.run"),
        (pointdata.PointReader, "read", "point data (PointReader.read)", "smalldata.io.pointdata.PointReader.read"),
        (writer.PartWriter, "append", "write part file (PartWriter.append)", "smalldata.output.writer.PartWriter.append"),
    ]
    for owner, attr, label, where in targets:
        timer.wrap(owner, attr, label, where)


def _short_name(func_key) -> str:
    """``path:line(function)`` relative to the repository or to site-packages."""
    filename, line, name = func_key
    if filename == "~":  # built-in
        return name
    path = Path(filename)
    if REPO_ROOT in path.parents:
        rel = path.relative_to(REPO_ROOT).as_posix()
    elif "site-packages" in path.parts:
        rel = "/".join(path.parts[path.parts.index("site-packages") + 1:])
    else:
        rel = path.name
    return f"{rel}:{line}({name})"


def stage_worker(args) -> int:
    """In-process producer run with stage timers (and optionally cProfile); prints JSON on stdout."""
    logging.basicConfig(level=logging.WARNING)
    import smalldata.pipeline.eventloop as eventloop
    from smalldata.config.producer import ProducerConfig

    config = ProducerConfig.from_file(args.config)
    # warm-up on a few trains (imports, first-touch of constants)
    eventloop.run_producer(config, args.run, output=args.worker_output, overwrite=True,
                           batch_size=args.batch_size, max_trains=5)
    timer = StageTimer()
    _instrument(timer)
    profiler = None
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    summary = eventloop.run_producer(config, args.run, output=args.worker_output, overwrite=True,
                                     batch_size=args.batch_size)
    wall = time.perf_counter() - t0
    report = {"frames": summary.rows, "wall_s": wall, "wrapped": timer.wrapped, "missing": timer.missing,
              "stages": [{"path": " > ".join(p), "exclusive_s": round(s, 4), "calls": timer.calls[p]}
                         for p, s in sorted(timer.exclusive.items(), key=lambda kv: -kv[1])]}
    if profiler is not None:
        import pstats

        profiler.disable()
        st = pstats.Stats(profiler)
        by_tottime = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:15]
        report["cprofile_total_s"] = wall
        report["cprofile_top_tottime"] = [
            {"function": _short_name(k), "calls": v[1], "tottime_s": round(v[2], 3), "cumtime_s": round(v[3], 3)}
            for k, v in by_tottime]
    print(json.dumps(report))
    return 0


def run_stage_worker(config: Path, run: int, batch_size: int, output: Path, cprofile: bool) -> Dict:
    """Run :func:`stage_worker` in a subprocess (MPI stays out of this process)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), str(config), "--run", str(run),
           "--batch-size", str(batch_size), "--worker-output", str(output)]
    if cprofile:
        cmd.append("--cprofile")
    result = run_command(cmd).check("stage worker")
    return json.loads(result.stdout.strip().splitlines()[-1])


def breakdown(stages: Dict, frames: int) -> List[Dict[str, object]]:
    """Stage table: exclusive seconds, microseconds per frame and share of the loop, loop stages first."""
    rows = [s for s in stages["stages"] if s["path"].startswith("run_producer > event loop")]
    loop_total = sum(s["exclusive_s"] for s in rows)
    out = []
    for s in rows:
        name = s["path"].replace("run_producer > event loop", "loop").replace("loop > ", "", 1)
        if name == "loop":
            name = "loop itself (batching, frame stage, bookkeeping)"
        out.append({"stage": name, "s": round(s["exclusive_s"], 3),
                    "us_per_frame": round(1e6 * s["exclusive_s"] / frames, 1),
                    "share": round(s["exclusive_s"] / loop_total, 3) if loop_total else 0.0})
    outside = [s for s in stages["stages"] if not s["path"].startswith("run_producer > event loop")]
    for s in outside:
        out.append({"stage": "(outside the loop) " + s["path"].replace("run_producer > ", "").replace(
            "run_producer", "run_producer itself"), "s": round(s["exclusive_s"], 3),
            "us_per_frame": round(1e6 * s["exclusive_s"] / frames, 1), "share": None})
    return out


def main(argv=None) -> int:
    """The worker's command line: ``CONFIG --run N --batch-size B --worker-output PATH [--cprofile]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="producer config")
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--worker-output", type=Path, required=True)
    parser.add_argument("--cprofile", action="store_true")
    return stage_worker(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
