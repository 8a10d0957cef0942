"""smd_simulate: write simulated SCS DSSC runs in the European XFEL raw format, plus truth files.

Example::

    smd_simulate --root demo_data -p 2937 -r 614 --dark-run 615 --preset demo
    EXTRA_DATA_DATA_ROOT=demo_data smd_producer -p 2937 -r 614 -c producer.yaml
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from functools import partial
from typing import Optional, Sequence

from smalldata.cli._cli import add_common_arguments, add_run_arguments, run_main

from smalldata.errors import SmallDataError
from smalldata.simulate import SimulationConfig, simulate_dark_run, simulate_run, truth_path
from smalldata.simulate.cameras import CAMERA_RUN_PRESETS
from smalldata.simulate.config import parse_int_list

log = logging.getLogger("smalldata.smd_simulate")

PRESETS = {"small": SimulationConfig.small, "demo": SimulationConfig.demo, "pump_probe": SimulationConfig.pump_probe}
#: BOZ presets (smalldata.simulate.boz): three zone-plate beams on one module; the name gives the variant.
BOZ_PRESETS = {"boz-empty": "empty", "boz-sample": "sample"}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="smd_simulate",
        description="Write simulated European XFEL runs of the SCS DSSC 1M (raw file format, readable with "
                    "extra-data) with planted physics, and a truth file next to each run "
                    "(<root>/SCS/202601/p<proposal>/raw/r<run>-truth.h5). Options override the preset.",
        epilog="Open the runs with EXTRA_DATA_DATA_ROOT=<root> and extra_data.open_run(proposal, run). "
               "See docs/simulator.md for the planted truth.")
    parser.add_argument("--root", required=True, help="data root directory (EXTRA_DATA_DATA_ROOT)")
    add_run_arguments(parser, run_help="data run number, e.g. 614", proposal_required=True, config_help=None)
    parser.add_argument("--dark-run", type=int, default=None, help="also write a dark run with this number")
    parser.add_argument("--preset", choices=sorted(PRESETS) + sorted(BOZ_PRESETS) + ["timing"] + sorted(CAMERA_RUN_PRESETS),
                        default="demo",
                        help="starting configuration: small (2 modules, 24 trains x 4 frames), demo "
                             "(16 modules, 60 trains x 20 frames; default), pump_probe (module 2, 12 trains x 8 "
                             "X-ray frames, the laser set by --laser), or BOZ runs of one module "
                             "(boz-empty: three empty membranes; boz-sample: an absorption edge and a pump "
                             "effect on n; see docs/boz.md; --modules, --trains, --frames-per-train, "
                             "--dark-trains, --seed, --detector-seed, --pattern and --delay-steps apply), or timing "
                             "(module 2, a stepped delay stage with backlash, trigger, BAM, a reflectivity with a "
                             "time-zero step and drift, a knife edge; docs/timing.md; --seed applies), or a per-train "
                             "camera run (hrixs, hrixs-elastic, viking-reference, viking-sample, viking-mono: "
                             "docs/simulator.md, Cameras; --trains, --seed and, for viking-mono, --photon-energy "
                             "apply; --dark-run writes the camera's dark)")
    parser.add_argument("--modules", default=None, help="DSSC modules, e.g. 0,3,15 or 0-15")
    parser.add_argument("--trains", type=int, default=None, help="trains in the data run")
    parser.add_argument("--frames-per-train", type=int, default=None, help="frames (memory cells) per train")
    parser.add_argument("--frames-change", default=None, metavar="TRAIN:COUNT",
                        help="from data-run train index TRAIN on, COUNT frames per train")
    parser.add_argument("--missing", action="append", default=[], metavar="MODULE:TRAINS",
                        help="module MODULE lacks these data-run train indices, e.g. 3:5,6 (repeatable)")
    parser.add_argument("--dark-trains", type=int, default=None, help="trains in the dark run")
    parser.add_argument("--sequence-trains", type=int, default=None, help="trains per sequence file")
    parser.add_argument("--pattern", default=None,
                        help="repeating frame labels, e.g. pumped,unpumped,dark ('dark' in a label: no X-rays; "
                             "label starting with 'pumped': pump laser)")
    parser.add_argument("--laser", default=None, metavar="FIRST:PERIOD",
                        help="the pump laser's real timing: first pulse on X-ray pulse FIRST (0-based), then every "
                             "PERIOD X-ray pulses, e.g. 2:2 (the table's PPL bits start at slot 0 either way)")
    parser.add_argument("--bunch-table-length", type=int, default=None, help="slots per bunch-pattern row (2700)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the per-run randomness")
    parser.add_argument("--detector-seed", type=int, default=None,
                        help="seed of the detector constants (shared by dark and data runs)")
    parser.add_argument("--photon-energy", type=float, default=None, help="photon energy, eV")
    parser.add_argument("--delay-steps", type=int, default=None, help="positions of the delay scan")
    parser.add_argument("--camera", choices=("newton", "hrixs", "fastccd"), default=None,
                        help="also write this per-train camera into the DSSC runs (presets small, demo, pump_probe): "
                             "its images, settings and planted per-train truth (docs/simulator.md, Cameras in a "
                             "DSSC run); the dark run gets its dark frames")
    parser.add_argument("--camera-shape", type=int, nargs=2, default=None, metavar=("NY", "NX"),
                        help="image shape of --camera (default: the camera's full shape)")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: CPU count)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing runs and truth files")
    add_common_arguments(parser)
    return parser


def _option_changes(args: argparse.Namespace, simple: dict) -> dict:
    """Config fields from the options that were given: ``simple`` maps option to field; plus --pattern."""
    changes = {field: getattr(args, arg) for arg, field in simple.items() if getattr(args, arg) is not None}
    if args.pattern is not None:
        changes["pattern"] = tuple(p.strip() for p in args.pattern.split(","))
    return changes


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """The preset with the command-line overrides; ConfigError on bad values."""
    changes = {}
    if args.modules is not None:
        changes["modules"] = parse_int_list(args.modules, "--modules")
    simple = {"trains": "n_trains", "frames_per_train": "frames_per_train", "dark_trains": "dark_trains",
              "sequence_trains": "sequence_trains", "seed": "seed", "detector_seed": "detector_seed",
              "photon_energy": "photon_energy", "delay_steps": "delay_steps",
              "bunch_table_length": "bunch_table_length"}
    changes.update(_option_changes(args, simple))
    if args.frames_change is not None:
        values = parse_int_list(args.frames_change.replace(":", ","), "--frames-change")
        if len(values) != 2:
            raise SmallDataError(f"--frames-change {args.frames_change!r}: give TRAIN:COUNT, e.g. 16:3")
        changes["frames_per_train_change"] = tuple(values)
    if args.laser is not None:
        values = parse_int_list(args.laser.replace(":", ","), "--laser")
        if len(values) != 2:
            raise SmallDataError(f"--laser {args.laser!r}: give FIRST:PERIOD, e.g. 2:2")
        changes["laser_pulses"] = tuple(values)
    missing = {}
    for item in args.missing:
        module, sep, trains = item.partition(":")
        if not sep:
            raise SmallDataError(f"--missing {item!r}: give MODULE:TRAINS, e.g. 3:5,6")
        missing[parse_int_list(module, "--missing")[0]] = tuple(parse_int_list(trains, "--missing"))
    if missing:
        changes["module_missing_trains"] = missing
    return PRESETS[args.preset](**changes)


def boz_config_from_args(args: argparse.Namespace):
    """The BOZ preset with the options that apply to it."""
    from smalldata.simulate.boz import BozSimConfig

    changes = {"variant": BOZ_PRESETS[args.preset]}
    if args.modules is not None:
        modules = parse_int_list(args.modules, "--modules")
        if len(modules) != 1:
            raise SmallDataError(f"--modules {args.modules!r}: the BOZ presets simulate one module")
        changes["module"] = modules[0]
    simple = {"trains": "n_trains", "frames_per_train": "frames_per_train", "dark_trains": "dark_trains",
              "sequence_trains": "sequence_trains", "seed": "seed", "detector_seed": "detector_seed",
              "delay_steps": "delay_steps"}
    changes.update(_option_changes(args, simple))
    return BozSimConfig(**changes)


def _boz_body(args: argparse.Namespace) -> int:
    from smalldata.simulate.boz import simulate_boz_runs

    cfg = boz_config_from_args(args)
    t0 = time.monotonic()
    written = simulate_boz_runs(args.root, args.proposal, args.run, args.dark_run, cfg, overwrite=args.overwrite,
                                threads=args.threads)
    for path in written:
        print(f"run {path.name}: {path}")
    print(f"simulated {len(written)} BOZ run(s) ({cfg.variant}) of module {cfg.module} in "
          f"{time.monotonic() - t0:.1f} s; open with EXTRA_DATA_DATA_ROOT={args.root}")
    return 0


def _timing_body(args: argparse.Namespace) -> int:
    from smalldata.simulate.delays import TimingSimConfig, simulate_timing_run, timing_simulation_config

    timing = TimingSimConfig()
    cfg = timing_simulation_config(timing, **({"seed": args.seed} if args.seed is not None else {}))
    t0 = time.monotonic()
    if args.dark_run is not None:
        simulate_dark_run(args.root, args.proposal, args.dark_run, cfg, overwrite=args.overwrite, threads=args.threads)
        print(f"dark run {args.dark_run}: {truth_path(args.root, args.proposal, args.dark_run).parent}")
    path = simulate_timing_run(args.root, args.proposal, args.run, timing, cfg, overwrite=args.overwrite,
                               threads=args.threads)
    print(f"data run {args.run}: {path} (truth: {truth_path(args.root, args.proposal, args.run)})")
    print(f"simulated the timing preset in {time.monotonic() - t0:.1f} s; open with EXTRA_DATA_DATA_ROOT={args.root}")
    return 0


def _camera_body(args: argparse.Namespace) -> int:
    from smalldata.simulate import run_path
    from smalldata.simulate.cameras import simulate_camera_preset

    t0 = time.monotonic()
    runs = simulate_camera_preset(args.root, args.proposal, args.run, args.preset, args.dark_run,
                                  n_trains=args.trains or 10, seed=1 if args.seed is None else args.seed,
                                  photon_energy=args.photon_energy, overwrite=args.overwrite)
    for run, kind in runs.items():
        print(f"{kind} run {run}: {run_path(args.root, args.proposal, run)} "
              f"(truth: {truth_path(args.root, args.proposal, run)})")
    print(f"simulated {len(runs)} camera run(s) ({args.preset}) in {time.monotonic() - t0:.1f} s; "
          f"open with EXTRA_DATA_DATA_ROOT={args.root}")
    return 0


def _body(args: argparse.Namespace) -> int:
    if args.dark_run is not None and args.dark_run == args.run:
        raise SmallDataError(f"--dark-run {args.dark_run} is the same as -r/--run; give another run number")
    if args.camera_shape is not None and args.camera is None:
        raise SmallDataError("--camera-shape needs --camera newton, hrixs or fastccd")
    if args.camera is not None and args.preset not in PRESETS:
        raise SmallDataError(f"--camera applies to the DSSC presets ({', '.join(sorted(PRESETS))}), not to "
                             f"--preset {args.preset}; choose one of those or leave --camera out")
    if args.preset in BOZ_PRESETS:
        return _boz_body(args)
    if args.preset == "timing":
        return _timing_body(args)
    if args.preset in CAMERA_RUN_PRESETS:
        return _camera_body(args)
    cfg = config_from_args(args)
    log.debug("configuration: %s", dataclasses.asdict(cfg))
    t0 = time.monotonic()
    simulate = partial(simulate_run, root=args.root, proposal=args.proposal, cfg=cfg, overwrite=args.overwrite,
                       threads=args.threads)
    if args.camera is not None:
        from smalldata.simulate.mixed import MixedCamera, MixedRunSimulation

        camera = MixedCamera(args.camera, tuple(args.camera_shape) if args.camera_shape else None)
        camera.validate()
        simulate = partial(simulate, simulation=partial(MixedRunSimulation, camera))
    written = []
    if args.dark_run is not None:
        written.append(("dark", args.dark_run, simulate(run=args.dark_run, dark=True)))
    written.append(("data", args.run, simulate(run=args.run, dark=False)))
    for kind, run, path in written:
        print(f"{kind} run {run}: {path} (truth: {truth_path(args.root, args.proposal, run)})")
    with_camera = f" with camera {args.camera}" if args.camera else ""
    print(f"simulated {len(written)} run(s) of modules {list(cfg.modules)}{with_camera} in "
          f"{time.monotonic() - t0:.1f} s; open with EXTRA_DATA_DATA_ROOT={args.root}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_simulate``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
