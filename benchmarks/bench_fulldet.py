"""Full-detector speed of the fused hot path, against plain h5py reads of the same frames.

On a simulated DSSC 1M run (all 16 modules, 20 frames per train, demo preset), warm page
cache, rounds alternating so that every measurement sees the same machine load:

1. read-only baseline: plain h5py reads of ``image/data`` of all 16 module files, in
   blocks of the producer's batch size (its default, 64 MiB of raw data: 32 frames);
2. the *standard config* an SCS user runs first: azimuthal over all 16 modules with 100
   q bins, three ROIs on modules 3, 8 and 12 with a projection each, XGM per pulse, delay
   per train; ``smd_producer`` on 1 rank (fused), 1 rank with ``SMALLDATA_HOT_PATH=numpy``
   (the numpy path), and 2 ranks (fused). Goals: 1 rank >= 0.5 x read-only, 2 ranks >= 1.7 x
   1 rank;
3. the demo config (``configs/producer.yaml``: azimuthal, ROI with projection,
   autocorrelation and photons, droplets on the whole detector, cube, run sums) on 1 rank,
   ``--demo-trains`` trains: fused, the numpy path, and the project at the last commit
   before the fused path (its own demo config; :mod:`baseline_tree`), the rate the
   goal was set against. Goal: >= 5x that baseline;
4. ``AvImage``'s computation (:func:`smalldata.sums.average.average_image`) over
   ``--avimage-frames`` full frames, at 20 and at 400 frames per train, in a subprocess
   (peak RSS), against h5py reading the same frames. Goals: >= 0.3 x read-only, <= 1 GB.

Also recorded: the numba compile and cache-load times of the kernel (a fresh cache
folder, then the same again), and the parts of a full frame in one process with the
bound they put on the 1-rank ratio (:mod:`fulldet_parts`). Writes ``benchmarks/results/fulldet.json``.

    python benchmarks/bench_fulldet.py [--trains 50] [--repeat 3] [--demo-trains 50]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import h5py
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_producer import producer_run  # noqa: E402
from baseline_tree import PRE_FUSED_COMMIT, baseline_demo_config, baseline_env, baseline_tree  # noqa: E402
from fulldet_parts import format_parts, kernel_parts  # noqa: E402
from common import (  # noqa: E402
    PROPOSAL,
    RESULTS_DIR,
    cpu_pressure,
    format_table,
    machine_info,
    prepare_runs,
    run_command,
    run_files,
    stats,
    warm_files,
    write_config,
    write_results,
)

log = logging.getLogger("bench_fulldet")
DATA_RUN, DARK_RUN, LONG_RUN, LONG_DARK = 614, 615, 624, 625
REPO_ROOT = Path(__file__).resolve().parents[1]
DSSC_KEY = "INSTRUMENT/SCS_DET_DSSC1M-1/DET/{m}CH0:xtdf/image/data"
BATCH_FRAMES = 32  # the producer's default: 64 MiB of raw data of 16 modules
NUMPY = {"SMALLDATA_HOT_PATH": "numpy"}
POINT_DATA = {
    "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                              "per": "pulse", "units": "uJ"}},
    "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value", "units": "mm"}},
}
GOALS = {"standard_1rank_vs_read": 0.5, "standard_2ranks_vs_1rank": 1.7, "demo_fused_vs_numpy": 5.0,
         "demo_fused_vs_baseline": 5.0,
         "avimage_vs_read": 0.3, "avimage_peak_mb": 1024.0}


def standard_config(root: Path, work: Path) -> Dict:
    """The standard full-detector config of the benchmark."""
    rois = [{"type": "roi", "name": f"roi_m{m}", "module": m, "roi": [10, 60, 100, 300],
             "children": [{"type": "projection", "name": "proj", "axis": 0}]} for m in (3, 8, 12)]
    return {
        "proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(work / "calib"),
        "output_dir": str(work / "out"), "point_data": POINT_DATA,
        "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": 15.0, "functions": [
            {"type": "azimuthal", "name": "azav", "center": [0.0004, -0.0003], "distance": 5.0,
             "photon_energy": 860.0, "q_bins": 100}] + rois}},
    }


def demo_config(root: Path, work: Path) -> Dict:
    """``configs/producer.yaml`` with this benchmark's folders."""
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "producer.yaml").read_text())
    cfg.update({"data_root": str(root), "calib_dir": str(work / "calib"), "output_dir": str(work / "out")})
    cfg["detectors"]["dssc"]["dark_run"] = DARK_RUN
    return cfg


def h5py_read(files: Sequence[Path], batch: int, max_frames: int = 0) -> Dict[str, float]:
    """Read ``image/data`` of every module file in blocks of ``batch`` frames; full frames per second.

    ``max_frames`` > 0: only the first ``max_frames`` frames of every module.
    """
    frames = touch = 0
    done: Dict[int, int] = {}
    t0 = time.perf_counter()
    for path in files:  # sorted: module, then sequence
        module = int(path.name.split("-DSSC")[1][:2])
        with h5py.File(path, "r") as f:
            ds = f[DSSC_KEY.format(m=module)]
            n = ds.shape[0] if not max_frames else min(ds.shape[0], max_frames - done.get(module, 0))
            for a in range(0, n, batch):
                block = ds[a:min(a + batch, n)]
                touch += int(block[-1, 0, 0, 0])
                frames += block.shape[0]
            done[module] = done.get(module, 0) + max(n, 0)
    seconds = time.perf_counter() - t0
    return {"module_frames": frames, "full_frames": frames / 16, "seconds": seconds, "fps": frames / 16 / seconds}


def compile_times() -> Dict[str, float]:
    """First call of the kernel with an empty numba cache (compile), then again (cache load), in subprocesses."""
    code = ("import time, numpy as np; t = time.perf_counter(); import smalldata.fused.kernels as k; "
            "from smalldata.fused.plan import FusedPlan; t1 = time.perf_counter();"
            "from smalldata.calib.detobject import DetObject; from smalldata.plugin.frames import RawBatch;"
            "z = np.zeros((1, 1, 128, 512), np.float32);"
            "det = DetObject('d', [0], z, z + 1, np.arange(1), np.zeros((1, 128, 512), np.uint8), gain=2.0);"
            "ids = np.zeros(1, np.uint64); raw = RawBatch(ids, ids, ids.astype(np.uint16), ids.astype(np.int64), (0,),"
            "np.zeros((1, 1, 128, 512), np.uint16), np.ones((1, 1), bool)); plan = FusedPlan(det, ());"
            "t2 = time.perf_counter(); plan.run(raw); print(time.perf_counter() - t2)")
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        first = float(run_command([sys.executable, "-c", code], env=env).check("compile").stdout.split()[-1])
        second = float(run_command([sys.executable, "-c", code], env=env).check("cache load").stdout.split()[-1])
    return {"first_call_s": first, "cached_call_s": second}


def avimage_worker(argv: List[str]) -> int:
    """In a subprocess: ``average_image`` of the first frames; prints frames, seconds, peak RSS."""
    import numpy as np

    from smalldata.calib.detobject import DetObject
    from smalldata.io.runaccess import RunAccess
    from smalldata.simulate import run_path
    from smalldata.sums.average import average_image, frame_keys, module_detectors

    root, run, dark, n_frames = Path(argv[0]), int(argv[1]), Path(argv[2]), int(argv[3])
    access = RunAccess.from_directory(run_path(root, PROPOSAL, run))
    counts = access.frames_per_train(access.available_modules())
    n_trains = int(np.searchsorted(np.cumsum(counts), n_frames) + 1)
    trains = access.train_ids[:n_trains]
    raw_ids = [access.read_raw((0,), trains[i:i + 1]) for i in range(n_trains)]
    keys = np.concatenate([frame_keys(r.train_ids, r.pulse_ids) for r in raw_ids])[:n_frames]
    del raw_ids
    t0 = time.perf_counter()
    make = module_detectors(dark, lambda mods, constants: DetObject.from_constants("dssc", constants, gain=15.0,
                                                                                   dark_file=str(dark)))
    image = average_image(access, make, access.available_modules(), trains, keys, "mean")
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as fh:
        peak = int([line.split()[1] for line in fh if line.startswith("VmHWM:")][0]) / 1024
    print(json.dumps({"frames": len(keys), "seconds": seconds, "fps": len(keys) / seconds, "peak_mb": peak,
                      "finite": float(np.isfinite(image).mean())}))
    return 0


#: smd_dark's settings for a short dark (``detectors.dssc.dark``): at least 2 frames per memory cell.
SHORT_DARK = {"min_frames": 2}
#: ... and for a dark of only 2 frames per cell (long trains: 400 cells, one frame per cell and train):
#: a noise estimate from 2 frames, |x1 - x2| / sqrt(2), is often 0 (integer ADC values) or far from
#: the pixel's noise in some of the 400 cells, so the dead and noisy tests would flag every pixel.
TWO_FRAME_DARK = {"min_frames": 2, "dead_noise_max": 0.0, "noisy_noise_nsigma": 50.0}


def prepare_run(sim_config, data_run: int, dark_run: int, name: str,
                dark_settings: Optional[Dict] = None) -> Dict[str, Path]:
    """Simulated data and dark runs, and their dark constants (cached); ``dark_settings``: the
    config's ``detectors.dssc.dark`` for smd_dark (default :data:`SHORT_DARK`)."""
    dark = dict(SHORT_DARK if dark_settings is None else dark_settings)
    prep = prepare_runs(name, {data_run: sim_config}, dark_run, sim_config, lambda root, work: {"dark": {
        "proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(work / "calib"), "output_dir": str(work / "out"),
        "detectors": {"dssc": {"dark_run": dark_run, "functions": [], "dark": dark}}}}, warm=False)
    return {"root": prep.root, "work": prep.work, "dark": prep.dark}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trains", type=int, default=50, help="trains of 20 frames of the data run (default 50)")
    p.add_argument("--repeat", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--demo-trains", type=int, default=50,
                   help="trains of the demo-config comparison (default 50: the whole run; fewer measure mostly start-up)")
    p.add_argument("--avimage-frames", type=int, default=1000, help="full frames of the AvImage rounds")
    p.add_argument("--skip-avimage", action="store_true", help="no AvImage measurement (saves the 400-frame run)")
    p.add_argument("--only-avimage", action="store_true",
                   help="only the AvImage measurement (writes results/fulldet_avimage.json)")
    p.add_argument("--avimage-worker", nargs=4, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.avimage_worker:
        return avimage_worker(args.avimage_worker)
    from smalldata.simulate import SimulationConfig

    sim = SimulationConfig.demo(n_trains=args.trains, dark_trains=30, sequence_trains=25)
    prep = prepare_run(sim, DATA_RUN, DARK_RUN, "fulldet")
    root, work = prep["root"], prep["work"]
    std = write_config(work / "standard.yaml", standard_config(root, work))
    demo = write_config(work / "demo.yaml", demo_config(root, work))
    if args.only_avimage:
        return only_avimage(args, prep, sim)
    files = run_files(root, DATA_RUN, "*DSSC*")
    warm_files(files)
    report: Dict[str, object] = {"machine": machine_info(), "cpu_pressure_start": cpu_pressure(),
                                 "frames": sim.n_trains * sim.frames_per_train, "goals": GOALS}
    report["compile"] = compile_times()
    log.info("kernel first call %.1f s (compile), %.2f s from the cache", report["compile"]["first_call_s"],
             report["compile"]["cached_call_s"])
    report["parts"] = kernel_parts(std, DATA_RUN)
    log.info("%s", format_parts(report["parts"]))
    out = work / "out"
    runs = [("std_fused", std, 1, None, None), ("std_numpy", std, 1, NUMPY, None), ("std_2ranks", std, 2, None, None),
            ("demo_fused", demo, 1, None, args.demo_trains), ("demo_numpy", demo, 1, NUMPY, args.demo_trains)]
    base = baseline_tree()  # "today's rate" of the issue: the last commit before the fused path
    if base is not None:
        folders = {"data_root": str(root), "calib_dir": str(work / "calib"), "output_dir": str(out)}
        base_cfg = write_config(work / "demo_baseline.yaml", baseline_demo_config(base, folders, DARK_RUN))
        runs.append(("demo_baseline", base_cfg, 1, baseline_env(base), args.demo_trains))
        report["baseline_commit"] = PRE_FUSED_COMMIT
    rounds: Dict[str, List[float]] = {k: [] for k in ["read"] + [r[0] for r in runs]}
    rss: Dict[str, float] = {}
    for r in range(args.repeat):
        rounds["read"].append(h5py_read(files, BATCH_FRAMES)["fps"])
        for key, cfg, ranks, env, trains in runs:
            res = producer_run(cfg, DATA_RUN, out / f"{key}.h5", None, n_ranks=ranks, max_trains=trains, env=env)
            rounds[key].append(res["loop_fps"])
            rss[key] = res["max_rss_mb"]
        log.info("round %d: %s", r + 1, {k: round(v[-1], 1) for k, v in rounds.items()})
    report["rounds_fps"] = rounds
    report["peak_rss_mb"] = rss
    best = {k: max(v) for k, v in rounds.items()}
    med = {k: statistics.median(v) for k, v in rounds.items()}
    ratio = lambda a, b: [x / y for x, y in zip(rounds[a], rounds[b])]  # noqa: E731 (same round)
    report["ratios"] = {
        "standard_1rank_vs_read": stats(ratio("std_fused", "read")),
        "standard_numpy_vs_read": stats(ratio("std_numpy", "read")),
        "standard_fused_vs_numpy": stats(ratio("std_fused", "std_numpy")),
        "standard_2ranks_vs_1rank": stats(ratio("std_2ranks", "std_fused")),
        "demo_fused_vs_numpy": stats(ratio("demo_fused", "demo_numpy")),
    }
    if "demo_baseline" in rounds:
        report["ratios"]["demo_fused_vs_baseline"] = stats(ratio("demo_fused", "demo_baseline"))
    report["fps"] = {"best": best, "median": med}
    if not args.skip_avimage:
        report["avimage"] = measure_avimage(args, prep, sim)
    report["cpu_pressure_end"] = cpu_pressure()
    write_results(report, RESULTS_DIR / "fulldet.json")
    print_report(report)
    demo_key = "demo_fused_vs_baseline" if "demo_fused_vs_baseline" in report["ratios"] else "demo_fused_vs_numpy"
    met = [report["ratios"][k]["median"] >= GOALS[k] for k in ("standard_1rank_vs_read", "standard_2ranks_vs_1rank", demo_key)]
    met += avimage_goals_met(report)
    return 0 if all(met) else 1


def avimage_goals_met(report: Dict) -> List[bool]:
    """One entry per AvImage goal and frames-per-train case (False for a case not measured)."""
    met = []
    for row in report.get("avimage", {}).values():
        if "error" in row:
            met.append(False)
            continue
        met += [row["ratio"]["median"] >= GOALS["avimage_vs_read"], row["peak_mb"] <= GOALS["avimage_peak_mb"]]
    return met


def only_avimage(args, prep, sim) -> int:
    """``--only-avimage``: the AvImage rounds alone, written to ``results/fulldet_avimage.json``."""
    report: Dict[str, object] = {"machine": machine_info(), "cpu_pressure_start": cpu_pressure(),
                                 "goals": {k: GOALS[k] for k in ("avimage_vs_read", "avimage_peak_mb")}}
    report["avimage"] = measure_avimage(args, prep, sim)
    report["cpu_pressure_end"] = cpu_pressure()
    write_results(report, RESULTS_DIR / "fulldet_avimage.json")
    print_avimage(report)
    return 0 if all(avimage_goals_met(report)) else 1


def measure_avimage(args, prep, sim) -> Dict[str, Dict]:
    """AvImage's computation at 20 and 400 frames per train, alternating with h5py reads."""
    from smalldata.simulate import SimulationConfig

    n = args.avimage_frames
    runs = {20: (prep, DATA_RUN)}
    long_sim = SimulationConfig.demo(n_trains=math.ceil(n / 400), frames_per_train=400, dark_trains=2,
                                     sequence_trains=10, slot_spacing=4)
    results = {}
    try:  # a dark of 2 trains (2 frames per cell), smd_dark set for it: 2 x 400 frames x 16 modules is 1.6 GB
        runs[400] = (prepare_run(long_sim, LONG_RUN, LONG_DARK, "fulldet400", TWO_FRAME_DARK), LONG_RUN)
    except RuntimeError as exc:
        results["400"] = {"error": str(exc).splitlines()[-1]}
        log.warning("AvImage at 400 frames per train not measured: %s", results["400"]["error"])
    for fpt, (p, run) in runs.items():
        files = run_files(p["root"], run, "*DSSC*")
        warm_files(files)
        read, ours, peaks, finite, load = [], [], [], [], []
        for _ in range(args.repeat):
            read.append(h5py_read(files, 128, max_frames=n)["fps"])
            res = run_command([sys.executable, __file__, "--avimage-worker", str(p["root"]), str(run),
                               str(p["dark"]), str(n)]).check("average_image")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            ours.append(row["fps"])
            peaks.append(row["peak_mb"])
            finite.append(row["finite"])
            load.append(round(os.getloadavg()[0], 2))
        results[str(fpt)] = {"frames": n, "read_fps": read, "avimage_fps": ours, "peak_mb": max(peaks),
                             "ratio": stats([a / b for a, b in zip(ours, read)]),
                             "finite_fraction": min(finite), "load_average_1min": load}
        log.info("AvImage %d frames per train: %s", fpt, results[str(fpt)])
    return results


def print_avimage(report: Dict) -> None:
    """The AvImage lines of the report."""
    for fpt, row in report.get("avimage", {}).items():
        if "error" in row:
            print(f"AvImage, {fpt} frames per train: not measured ({row['error']})")
            continue
        print(f"AvImage, {fpt} frames per train: ratio to h5py {row['ratio']['best']:.2f} / "
              f"{row['ratio']['median']:.2f}, peak {row['peak_mb']:.0f} MB")


def print_report(report: Dict) -> None:
    best, med = report["fps"]["best"], report["fps"]["median"]
    rows = [[k, f"{best[k]:.0f} / {med[k]:.0f}"] for k in best]
    print(format_table(rows, ["measurement", "full frames/s best / median"]))
    rows = [[k, f"{v['best']:.2f} / {v['median']:.2f}", GOALS.get(k, "")] for k, v in report["ratios"].items()]
    print(format_table(rows, ["ratio (same round)", "best / median", "goal"]))
    print_avimage(report)
    if "parts" in report:
        print(format_parts(report["parts"]))
    print(f"kernel compile {report['compile']['first_call_s']:.1f} s, from cache "
          f"{report['compile']['cached_call_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
