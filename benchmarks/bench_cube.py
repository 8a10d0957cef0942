"""What the binned cube and the run sums cost: producer overhead and per-frame cost, before and after.

Issue 5's acceptance: "the cube adds at most 30% to the producer's time for a full-module
cube". On one simulated run (modules 0-3, 40 trains of 20 frames by default) the producer
runs in-process on one rank, same run and batch size, in interleaved rounds (the order
rotates from round to round), as:

a. ``roi``: one ROI per module (frames are read whole; only the ROIs' box is calibrated);
a'. ``roi_fullcal``: the same with whole modules calibrated (``setup.calibration_region``
   patched to None): what any config with a whole-module function or a cube pays anyway;
b. ``cube``: a plus ``cube: {scan: scan/delay, unique: true, xgm: xgm/sa3_intensity}`` over
   all the read modules (which needs the whole modules calibrated);
c. ``cube_sums``: b plus ``sums: {threshold: 0.5}``;

and c with ``CubeAccumulator.add(..., sums=...)`` sharing the per-pixel passes
(``cube_sums_shared``: ``DetectorAccumulators.add`` patched as accumulate.py could call it),
and b and c with the accumulators of :data:`BASELINE_COMMIT` (read with ``git show``).
Loop time: a timer around ``smalldata.pipeline.eventloop._process_block`` (reading, calibration,
functions, accumulation, part files; set-up, reduction and the final file are outside).
Timers around ``DetObject.calibrate`` and ``DetectorAccumulators.add`` split the difference
into extra calibration and accumulation; ``reduce`` + ``write`` make the end phase.

Per-frame cost in isolation: ``CubeAccumulator.add`` and ``RunSums.add`` on batches of 40
full-DSSC frames ``(16, 128, 512)`` float32 in photons with a realistic mask (ASIC edges,
0.3% bad pixels, rare saturated pixels), alternating pumped/unpumped labels and two scan
bins per batch, current code and baseline interleaved. MPI stays out of this process (the
producer runs in a worker subprocess). Writes ``benchmarks/results/cube.json``.

    python benchmarks/bench_cube.py [--trains 40] [--modules 0,1,2,3] [--repeat 5]
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accumulator_costs import (  # noqa: E402
    BASELINE_COMMIT,
    baseline_package,
    import_baseline,
    measure_per_frame,
    measure_write,
)
from common import (  # noqa: E402
    PROPOSAL,
    RESULTS_DIR,
    cpu_pressure,
    format_table,
    machine_info,
    prepare_runs,
    run_command,
    stats,
    write_results,
)

log = logging.getLogger("bench_cube")

DATA_RUN, DARK_RUN = 614, 615
REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.30
ROI = [10, 60, 100, 300]
#: Producer variants: name -> (config, accumulator code, whole modules calibrated, cube and sums sharing passes).
VARIANTS = {
    "roi": ("roi", "now", False, False),
    "roi_fullcal": ("roi", "now", True, False),
    "cube": ("cube", "now", False, False),
    "cube_sums": ("cube_sums", "now", False, False),
    "cube_sums_shared": ("cube_sums", "now", False, True),
    "cube_before": ("cube", "before", False, False),
    "cube_sums_before": ("cube_sums", "before", False, False),
}


# ---------------------------------------------------------------------- data and configs
def simulation_config(args):
    """The simulated run: ``args.modules``, ``args.trains`` trains of ``args.frames_per_train`` frames."""
    from smalldata.simulate import SimulationConfig

    return SimulationConfig(modules=tuple(args.modules), n_trains=args.trains, frames_per_train=args.frames_per_train,
                            sequence_trains=50, dark_trains=args.dark_trains, delay_steps=5,
                            speckle_module=args.modules[-1])


def producer_config(root: Path, work: Path, modules: List[int], batch_size: int, variant: str,
                    min_dark_frames: int) -> Dict:
    """One ROI per module; ``cube`` adds the cube, ``cube_sums`` the cube and the run sums (``roi_fullcal`` = roi)."""
    det = {
        "dark_run": DARK_RUN, "gain": 15.0, "modules": list(modules), "dark": {"min_frames": min_dark_frames},
        "functions": [{"type": "roi", "name": f"roi_m{m}", "module": m, "roi": ROI} for m in modules],
    }
    if variant in ("cube", "cube_sums"):
        det["cube"] = {"scan": "scan/delay", "unique": True, "xgm": "xgm/sa3_intensity"}
    if variant == "cube_sums":
        det["sums"] = {"threshold": 0.5}
    return {
        "proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(work / "calib"),
        "output_dir": str(work / "out"), "batch_size": batch_size,
        "pattern": {"labels": ["pumped", "unpumped"]},
        "detectors": {"dssc": det},
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}},
        },
    }


def prepare(args) -> Tuple[Path, Dict[str, Path]]:
    """Simulated dark and data runs, dark constants and the three configs (cached); warm page cache."""
    sim = simulation_config(args)
    prep = prepare_runs("cube", {DATA_RUN: sim}, DARK_RUN, sim, lambda root, work: {
        v: producer_config(root, work, args.modules, args.batch_size, v, args.dark_trains)
        for v in ("roi", "cube", "cube_sums")})
    return prep.root, prep.configs


# ---------------------------------------------------------------------- the producer (worker)
def producer_worker(args) -> int:
    """Interleaved in-process producer runs of the variants; prints JSON on stdout (runs in a subprocess)."""
    logging.basicConfig(level=logging.WARNING)
    import smalldata.calib.detobject as detobject
    import smalldata.pipeline.detectors as setup
    import smalldata.pipeline.eventloop as eventloop
    import smalldata.sums.accumulate as accumulate
    from smalldata.config.producer import ProducerConfig

    configs = json.loads(args.worker_configs)
    baseline = import_baseline(Path(args.baseline_dir)) if args.baseline_dir else None
    code = {"now": (accumulate.CubeAccumulator, accumulate.RunSums)}
    if baseline is not None:
        code["before"] = (baseline[0].CubeAccumulator, baseline[1].RunSums)
    region, separate_add = setup.calibration_region, accumulate.DetectorAccumulators.add
    state = {"shared": False}
    spent: Dict[str, float] = {}

    def add(self, frames, label_id, points, keep):
        """The cube and the sums in separate calls, or in one (``cube_sums_shared``, the producer's way)."""
        if self.cube is None:
            return separate_add(self, frames, label_id, points, keep)
        scan = self.cube_cfg["scan"]
        bins = self.binning.assign(points[scan] if scan else None, n_frames=len(frames))
        xgm = points[self.cube_cfg["xgm"]] if self.cube_cfg["xgm"] else None
        if state["shared"] and self.sums is not None:
            self.cube.add(frames.data, bins, label_id, xgm=xgm, valid=frames.valid, keep=keep, sums=self.sums)
        else:  # the code before the fast kernels has no shared pass
            self.cube.add(frames.data, bins, label_id, xgm=xgm, valid=frames.valid, keep=keep)
            if self.sums is not None:
                self.sums.add(frames.data, valid=frames.valid, keep=keep)

    def timed(owner, attr, label):
        original = getattr(owner, attr)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
        setattr(owner, attr, wrapper)

    accumulate.DetectorAccumulators.add = add
    timed(eventloop, "_process_block", "loop")
    timed(detobject.DetObject, "calibrate", "calibrate")
    timed(accumulate.DetectorAccumulators, "add", "accumulate")
    timed(accumulate.DetectorAccumulators, "reduce", "end")
    timed(accumulate.DetectorAccumulators, "write", "end")
    variants = [v for v, spec in VARIANTS.items() if spec[1] in code]
    loaded = {c: ProducerConfig.from_file(Path(path)) for c, path in configs.items()}
    output = Path(args.worker_output)

    def run(variant, max_trains=None):
        config, which, full_calibration, shared = VARIANTS[variant]
        accumulate.CubeAccumulator, accumulate.RunSums = code[which]
        setup.calibration_region = (lambda functions, whole: None) if full_calibration else region
        state["shared"] = shared
        spent.clear()
        t0 = time.perf_counter()
        summary = eventloop.run_producer(loaded[config], DATA_RUN, output=output, overwrite=True,
                                         batch_size=args.batch_size, max_trains=max_trains)
        wall = time.perf_counter() - t0
        with h5py.File(output, "r") as f:
            meta_elapsed = float(f["meta"].attrs["elapsed_s"])
        return {"variant": variant, "frames": summary.rows, "run_producer_s": wall, "meta_elapsed_s": meta_elapsed,
                **{f"{k}_s": v for k, v in spent.items()}}

    for variant in variants:  # warm-up: imports, first touch of constants
        run(variant, max_trains=4)
    rows = []
    for r in range(args.repeat):
        shift = r % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            rows.append(dict(run(variant), round=r))
    print(json.dumps(rows))
    return 0


def run_worker(args, configs: Dict[str, Path], baseline_dir: Optional[Path], output: Path) -> List[Dict]:
    """:func:`producer_worker` in a subprocess (MPI stays out of this process)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--worker-configs",
           json.dumps({k: str(v) for k, v in configs.items()}), "--worker-output", str(output),
           "--batch-size", str(args.batch_size), "--repeat", str(args.repeat)]
    if baseline_dir is not None:
        cmd += ["--baseline-dir", str(baseline_dir)]
    result = run_command(cmd, cwd=REPO_ROOT).check("producer worker")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise_producer(rows: List[Dict]) -> Dict[str, object]:
    """Per variant: loop, calibration, accumulation and end-phase times; overheads against ``roi`` and ``roi_fullcal``.

    An overhead is ``loop(variant) / loop(reference) - 1`` from the best loop times
    (``best``) and the median of the per-round ratios (``median``: each round runs every
    variant once, so drifting machine load cancels).
    """
    by: Dict[str, List[Dict]] = {}
    for row in rows:
        by.setdefault(row["variant"], []).append(row)
    frames = rows[0]["frames"]
    out: Dict[str, object] = {"frames": frames, "variants": {}}
    for name, rs in by.items():
        out["variants"][name] = {
            "loop_s": stats([r["loop_s"] for r in rs], higher_is_better=False),
            "loop_ms_per_frame_best": round(1e3 * min(r["loop_s"] for r in rs) / frames, 3),
            "calibrate_s_median": round(statistics.median(r.get("calibrate_s", 0.0) for r in rs), 3),
            "accumulate_s_median": round(statistics.median(r.get("accumulate_s", 0.0) for r in rs), 3),
            "accumulate_ms_per_frame_best": round(1e3 * min(r.get("accumulate_s", 0.0) for r in rs) / frames, 3),
            "end_s_median": round(statistics.median(r.get("end_s", 0.0) for r in rs), 3),
            "run_producer_s_median": round(statistics.median(r["run_producer_s"] for r in rs), 3),
            "meta_elapsed_s_median": round(statistics.median(r["meta_elapsed_s"] for r in rs), 3),
        }
    rounds: Dict[int, Dict[str, float]] = {}
    for row in rows:
        rounds.setdefault(row["round"], {})[row["variant"]] = row["loop_s"]

    def overhead(name, ref):
        v, base = out["variants"][name], out["variants"][ref]
        paired = [r[name] / r[ref] - 1 for r in rounds.values() if name in r and ref in r]
        return {"best": round(v["loop_s"]["best"] / base["loop_s"]["best"] - 1, 4),
                "median": round(statistics.median(paired), 4),
                "accumulation_share_best": round(v["accumulate_ms_per_frame_best"]
                                                 / base["loop_ms_per_frame_best"], 4)}

    out["overhead_vs_roi"] = {n: overhead(n, "roi") for n in by if n != "roi"}
    out["overhead_vs_roi_fullcal"] = {n: overhead(n, "roi_fullcal") for n in by if n.startswith("cube")}
    return out


# ---------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2, 3],
                        help="simulated DSSC modules, comma-separated (default 0,1,2,3)")
    parser.add_argument("--trains", type=int, default=40, help="trains of the data run (default 40)")
    parser.add_argument("--frames-per-train", type=int, default=20, help="frames per train (default 20)")
    parser.add_argument("--dark-trains", type=int, default=25, help="trains of the dark run (default 25)")
    parser.add_argument("--batch-size", type=int, default=40, help="frames per batch (default 40)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the producer variants (default 5)")
    parser.add_argument("--frame-rounds", type=int, default=4,
                        help="rounds of the per-frame measurement (default 3)")
    parser.add_argument("--no-baseline", action="store_true", help=f"skip the baseline {BASELINE_COMMIT[:12]}")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "cube.json")
    # internal: the in-process producer worker
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-configs", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return producer_worker(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()
    machine = machine_info()
    machine["cpu_pressure_some_avg60_at_start"] = cpu_pressure()
    baseline_dir = None if args.no_baseline else baseline_package()
    baseline = import_baseline(baseline_dir)
    root, configs = prepare(args)

    per_frame = measure_per_frame(baseline, args.frame_rounds, calls=2)
    log.info("per-frame costs measured")
    rows = run_worker(args, configs, baseline_dir, root / "work" / "out" / "bench_cube.h5")
    producer = summarise_producer(rows)
    write = measure_write(baseline)

    ratio_b = producer["overhead_vs_roi"]["cube"]["best"]
    ratio_c = producer["overhead_vs_roi"]["cube_sums"]["best"]
    ratio_b_full = producer["overhead_vs_roi_fullcal"]["cube"]["best"]
    report = {
        "benchmark": "cube",
        "what": "producer loop time (timer around eventloop._process_block, in-process, 1 rank, interleaved "
                "rounds) for ROI-only / + full-module cube / + cube and run sums on a simulated run; per-frame "
                "cost of CubeAccumulator.add and RunSums.add on full-DSSC frames, current vs baseline commit",
        "goal": f"the cube adds at most {GOAL:.0%} to the producer's loop time: (b-a)/a <= {GOAL}",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "data": {"modules": args.modules, "trains": args.trains, "frames_per_train": args.frames_per_train,
                 "batch_size": args.batch_size, "repeat": args.repeat, "roi": ROI,
                 "baseline_commit": BASELINE_COMMIT if baseline is not None else None},
        "per_frame_ms": per_frame,
        "producer": producer,
        "producer_runs": rows,
        "write_gzip": write,
        "overhead_cube": ratio_b,
        "overhead_cube_sums": ratio_c,
        "overhead_cube_vs_whole_module_producer": ratio_b_full,
        "goal_met": ratio_b <= GOAL,
        "goal_met_vs_whole_module_producer": ratio_b_full <= GOAL,
    }
    report["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["cpu_pressure_some_avg60_at_end"] = cpu_pressure()
    path = write_results(report, args.output)
    print_report(report)
    log.info("wrote %s (%.0f s)", path, report["bench_wall_s"])
    return 0 if report["goal_met"] else 1


def print_report(report: Dict) -> None:
    """The result tables on stdout."""
    pf = report["per_frame_ms"]
    rows = []
    for name, label in (("cube", "CubeAccumulator.add"), ("cube_squares", "CubeAccumulator.add, sum_squares"),
                        ("sums", "RunSums.add, threshold"), ("cube_and_sums", "cube, then run sums"),
                        ("cube_with_sums", "CubeAccumulator.add(sums=...)")):
        before, after = pf.get("before", {}).get(name), pf["after"][name]
        speed_up = pf.get("speed_up_best", {}).get(name)
        rows.append([label, f"{before['best']:.2f} / {before['median']:.2f}" if before else "-",
                     f"{after['best']:.2f} / {after['median']:.2f}", f"{speed_up:.1f} x" if speed_up else "-"])
    print("\nper full-DSSC frame (16 x 128 x 512 float32), ms best / median:")
    print(format_table(rows, ["call", "before", "after", "speed-up (best)"]))
    p = report["producer"]
    d = report["data"]
    print(f"\nproducer loop, 1 rank, {p['frames']} frames x modules {d['modules']}, batch {d['batch_size']}; "
          "overheads: ratio of best loop times / median of per-round ratios:")
    rows = []
    for name, v in p["variants"].items():
        a, f = p["overhead_vs_roi"].get(name), p["overhead_vs_roi_fullcal"].get(name)
        rows.append([name, f"{v['loop_s']['best']:.2f} / {v['loop_s']['median']:.2f}",
                     f"{v['loop_ms_per_frame_best']:.2f}", f"{v['calibrate_s_median']:.2f}",
                     f"{v['accumulate_s_median']:.2f}", f"{v['end_s_median']:.2f}",
                     f"{100 * a['best']:+.0f} / {100 * a['median']:+.0f} %" if a else "",
                     f"{100 * f['best']:+.0f} / {100 * f['median']:+.0f} %" if f else ""])
    print(format_table(rows, ["variant", "loop s best / med", "ms/frame", "calibrate s", "accumulate s",
                              "reduce+write s", "vs roi", "vs roi_fullcal"]))
    w = report["write_gzip"]
    print(f"\nwriting a cube ({w['cube']}) with compression='gzip': "
          + ", ".join(f"{c} {w[c]['seconds']['best']:.2f} s ({w[c]['file_mb']} MB)" for c in ("before", "after")
                      if c in w))
    print(f"goal ((b-a)/a <= {GOAL:.0%}): (b-a)/a = {100 * report['overhead_cube']:.0f} %, "
          f"(c-a)/a = {100 * report['overhead_cube_sums']:.0f} %: {'met' if report['goal_met'] else 'NOT met'}; "
          f"against the producer calibrating whole modules (roi_fullcal): cube "
          f"{100 * report['overhead_cube_vs_whole_module_producer']:+.0f} %: "
          f"{'met' if report['goal_met_vs_whole_module_producer'] else 'NOT met'} (accumulation alone: "
          f"{100 * report['producer']['overhead_vs_roi_fullcal']['cube']['accumulation_share_best']:.0f} % "
          "of that loop)")


if __name__ == "__main__":
    raise SystemExit(main())
