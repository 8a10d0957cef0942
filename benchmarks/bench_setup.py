"""What a run costs besides its frames: set-up and finalisation of ``smd_producer``.

Every rank pays the set-up (opening the run, the dark constants, the functions' set-up and
checks) and rank 0 the finalisation (merging, describing the constants) once per run. With
64 ranks sharing a run each rank processes only a few thousand frames, so these seconds
weigh as much as the frames. Measured on the full-detector standard config of
:mod:`bench_fulldet`, 1 rank, ``--max-trains 2``, at 20 and at 400 frames per train (the
dark constants of 20 and 400 memory cells: 0.17 and 3.4 GB), against the project at
:data:`SETUP_BASELINE_COMMIT` (the commit before the set-up was last reworked), rounds
alternating. Reported per case: whole-command wall time, ``elapsed - loop`` (set-up and
finalisation inside ``run_producer``), and the peak RSS.

    python benchmarks/bench_setup.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_tree import baseline_env, baseline_tree  # noqa: E402
from bench_fulldet import (  # noqa: E402
    DARK_RUN,
    DATA_RUN,
    LONG_DARK,
    LONG_RUN,
    TWO_FRAME_DARK,
    prepare_run,
    standard_config,
)
from bench_producer import producer_run  # noqa: E402
from common import RESULTS_DIR, cpu_pressure, format_table, machine_info, run_files, stats, warm_files  # noqa: E402
from common import write_config, write_results  # noqa: E402

log = logging.getLogger("bench_setup")
#: The last commit before the set-up read the pedestal cell-major, hashed the dark in the
#: background and compared a bounded sample of frames with the dark.
SETUP_BASELINE_COMMIT = "08860bc4207e6ccc339853c18a4e34754c65a802"
TRAINS = 2


def prepare_cases() -> Dict[str, Dict]:
    """The 20- and 400-frames-per-train runs of :mod:`bench_fulldet` (cached) and their configs."""
    from smalldata.simulate import SimulationConfig

    short = SimulationConfig.demo(n_trains=50, dark_trains=30, sequence_trains=25)
    long = SimulationConfig.demo(n_trains=math.ceil(1000 / 400), frames_per_train=400, dark_trains=2,
                                 sequence_trains=10, slot_spacing=4)
    cases = {}
    for fpt, sim, run, dark, name, settings in ((20, short, DATA_RUN, DARK_RUN, "fulldet", None),
                                                (400, long, LONG_RUN, LONG_DARK, "fulldet400", TWO_FRAME_DARK)):
        prep = prepare_run(sim, run, dark, name, settings)
        cfg = standard_config(prep["root"], prep["work"])
        cfg["detectors"]["dssc"]["dark_run"] = dark
        cases[str(fpt)] = {"config": write_config(prep["work"] / "setup_standard.yaml", cfg), "run": run,
                           "out": prep["work"] / "out", "files": run_files(prep["root"], run, "*DSSC*"),
                           "dark_file": prep["dark"]}
    return cases


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="alternating rounds (default 3)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cases = prepare_cases()
    base = baseline_tree(SETUP_BASELINE_COMMIT)
    versions = {"today": None}
    if base is not None:
        versions["baseline"] = baseline_env(base)
    report: Dict[str, object] = {"machine": machine_info(), "cpu_pressure_start": cpu_pressure(),
                                 "baseline_commit": SETUP_BASELINE_COMMIT, "trains": TRAINS, "cases": {}}
    for fpt, case in cases.items():
        warm_files(case["files"] + [Path(case["dark_file"])])
        rows: Dict[str, Dict[str, List[float]]] = {v: {"wall_s": [], "setup_merge_s": [], "peak_mb": []}
                                                   for v in versions}
        for version, env in versions.items():  # not counted: compiles each version's kernels into its cache
            producer_run(case["config"], case["run"], case["out"] / f"setup_{version}.h5", None,
                         max_trains=TRAINS, env=env)
        for r in range(args.repeat):
            for version, env in versions.items():
                res = producer_run(case["config"], case["run"], case["out"] / f"setup_{version}.h5", None,
                                   max_trains=TRAINS, env=env)
                rows[version]["wall_s"].append(res["wall_s"])
                rows[version]["setup_merge_s"].append(res["setup_merge_s"])
                rows[version]["peak_mb"].append(res["max_rss_mb"])
            log.info("%s frames per train, round %d: %s", fpt, r + 1,
                     {v: round(rows[v]["wall_s"][-1], 2) for v in versions})
        entry = {v: {k: {"values": x, "median": statistics.median(x)} for k, x in row.items()}
                 for v, row in rows.items()}
        if "baseline" in rows:  # same round: baseline time / today's time
            entry["speedup_wall"] = stats([b / t for b, t in zip(rows["baseline"]["wall_s"], rows["today"]["wall_s"])])
        report["cases"][fpt] = entry
    report["cpu_pressure_end"] = cpu_pressure()
    write_results(report, RESULTS_DIR / "setup.json")
    print_report(report)
    return 0


def print_report(report: Dict) -> None:
    """One line per case and version: medians of wall time, set-up + finalisation, peak memory."""
    rows = []
    for fpt, entry in report["cases"].items():
        for version in ("baseline", "today"):
            if version in entry:
                e = entry[version]
                rows.append([f"{fpt} frames/train", version, f"{e['wall_s']['median']:.1f}",
                             f"{e['setup_merge_s']['median']:.1f}", f"{e['peak_mb']['median']:.0f}"])
    print(format_table(rows, ["case", "code", "wall s", "set-up + finalisation s", "peak MB"]))


if __name__ == "__main__":
    sys.exit(main())
