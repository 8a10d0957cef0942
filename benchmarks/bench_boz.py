"""BOZ: the correction determination (``smd_boz``) on a run of one module, and the boz function per frame.

- ``smd_boz`` wall time and peak memory per rank on a simulated empty-membrane run of
  ``--trains`` x ``--frames`` frames of module 15 (default 500 x 100, 6.4 GB), for each rank
  count of ``--ranks``; baseline in the same run: reading the same frames with extra-data
  (the I/O floor of a pass over the data; smd_boz makes two passes).
- The boz function's cost per frame against the ``roi`` function summing the same three
  boxes (the cheapest ROI sum of the same pixels), on batches of calibrated frames.

Writes ``benchmarks/results/boz.json``.

    python benchmarks/bench_boz.py [--trains 500] [--frames 100] [--ranks 1,2] [--batch 256]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (PROPOSAL, bench_dir, cache_key, format_table, machine_info, run_command,  # noqa: E402
                    script_command, stats, tool, write_config, write_results)

log = logging.getLogger("bench_boz")
EMPTY, DARK = 614, 615


def simulate(trains: int, frames: int) -> Path:
    """The BOZ dark and empty runs (cached under the bench folder)."""
    from smalldata.simulate import truth_path
    from smalldata.simulate.boz import BozSimConfig, simulate_boz_runs

    cfg = BozSimConfig(n_trains=trains, frames_per_train=frames, dark_trains=20, sequence_trains=100)
    root = bench_dir() / f"boz_{cache_key(cfg.to_json())}"
    if truth_path(root, PROPOSAL, EMPTY).is_file():
        log.info("reusing BOZ runs under %s", root)
        return root
    t0 = time.perf_counter()
    simulate_boz_runs(root, PROPOSAL, EMPTY, DARK, cfg, overwrite=True)
    log.info("simulated BOZ runs under %s in %.0f s", root, time.perf_counter() - t0)
    return root


def read_baseline(root: Path) -> float:
    """Seconds to read every frame of module 15 with extra-data, in blocks of 10 trains."""
    from extra_data import RunDirectory, by_index

    from smalldata.simulate import run_path

    run = RunDirectory(str(run_path(root, PROPOSAL, EMPTY)))
    kd = run["SCS_DET_DSSC1M-1/DET/15CH0:xtdf", "image.data"]
    t0 = time.perf_counter()
    total = 0
    for start in range(0, len(run.train_ids), 10):
        total += int(kd.select_trains(by_index[start:start + 10]).ndarray().sum(dtype=np.int64) > 0)
    return time.perf_counter() - t0


def function_cost(root: Path, corrections: Path, calib: Path, batch: int, repeat: int) -> dict:
    """Microseconds per frame of the boz function and of roi sums of the same boxes."""
    from smalldata.calib.darkfile import dark_file_path
    from smalldata.calib.detobject import DetObject
    from smalldata.funcs.boz import BOZ
    from smalldata.funcs.roi import ROI
    from smalldata.io.runaccess import RunAccess
    from smalldata.simulate import run_path

    det = DetObject.from_dark_file("dssc", dark_file_path(calib, PROPOSAL, DARK, "dssc"), modules=[15])
    boz = BOZ(module=15, corrections=str(corrections))
    boz.setup(det)
    rois = [ROI(name=f"r{o}", module=15, roi=boz.corr.rois[o]) for o in ("n", "0", "p")]
    for r in rois:
        r.setup(det)
    access = RunAccess.from_directory(run_path(root, PROPOSAL, EMPTY))
    per_train = int(access.module_frame_counts(15).max())
    raw = access.read_raw((15,), access.train_ids[:max(1, batch // per_train)])
    frames = det.calibrate(raw, region=boz.required_region())
    n = len(frames)

    def timed(fn):
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) / n * 1e6)
        return stats(times, higher_is_better=False)

    calib_t = timed(lambda: det.calibrate(raw, region=boz.required_region()))
    return {"frames_per_batch": n, "boz_us_per_frame": timed(lambda: boz.process(frames)),
            "roi_x3_us_per_frame": timed(lambda: [r.process(frames) for r in rois]),
            "calibrate_us_per_frame": calib_t}


def main(argv=None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trains", type=int, default=500)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--ranks", default="1,2", help="rank counts for smd_boz, e.g. 1,2")
    parser.add_argument("--batch", type=int, default=256, help="frames per batch of the function timing")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = simulate(args.trains, args.frames)
    calib = root / "calib"
    config = write_config(root / "boz.yaml", {
        "proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(calib),
        "detectors": {"dssc": {"dark_run": DARK, "modules": [15], "dark": {"min_frames": 20}}}})
    from common import dark_constants

    dark_constants(config, DARK, calib)
    read_s = read_baseline(root)
    n_frames = args.trains * args.frames
    rows, runs = [], {}
    corrections = None
    for n in (int(v) for v in args.ranks.split(",")):
        out = root / f"boz_corrections_n{n}.json"
        peak = root / f"peak_n{n}"
        cmd = ([tool("mpiexec"), "-n", str(n)] if n > 1 else []) + script_command(
            "smalldata.cli.smd_boz:main", ["-d", str(DARK), "-r", str(EMPTY), "-g", "3", "-c", str(config),
                                           "--output", str(out), "--overwrite", "--no-plots", "--quiet"], peak)
        res = run_command(cmd, peak_rss=peak)
        res.check("smd_boz")
        summary = json.loads(out.read_text())["summary"]
        runs[n] = {"wall_s": res.wall_s, "peak_rss_mb": res.peak_rss_mb, "timings_s": summary["timings_s"],
                   "n_unsaturated": summary["n_unsaturated"]}
        rows.append([n, f"{res.wall_s:.1f}", f"{n_frames / res.wall_s:.0f}",
                     json.dumps({k: round(v, 1) for k, v in summary["timings_s"].items()}),
                     res.peak_rss_mb and max(res.peak_rss_mb.values())])
        corrections = out
    cost = function_cost(root, corrections, calib, args.batch, args.repeat)
    report = {"machine": machine_info(), "trains": args.trains, "frames_per_train": args.frames,
              "frames": n_frames, "read_baseline_s": read_s, "smd_boz": runs, "function": cost}
    write_results(report, Path(__file__).resolve().parent / "results" / "boz.json")
    print(format_table(rows, ["ranks", "smd_boz wall s", "frames/s", "phases s (rank 0)", "peak RSS MB"]))
    print(f"baseline: reading the {n_frames} frames once with extra-data: {read_s:.1f} s "
          f"({n_frames / read_s:.0f} frames/s)")
    print(f"boz function: {cost['boz_us_per_frame']['median']:.0f} us/frame; roi x3 on the same boxes: "
          f"{cost['roi_x3_us_per_frame']['median']:.0f} us/frame; calibration of the box: "
          f"{cost['calibrate_us_per_frame']['median']:.0f} us/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
