"""smd_hrixs: hRIXS constants from raw runs; ``curvature`` fits the line curvature of an elastic-line run."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main

log = logging.getLogger("smalldata.smd_hrixs")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="smd_hrixs",
        description="hRIXS spectrometer constants from raw camera runs (docs/detectors/hrixs.md).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cur = sub.add_parser(
        "curvature", help="fit the curvature of the spectral lines from an elastic-line run",
        description="Sum the dark-subtracted camera frames of an elastic-line run, find the line's row in slices "
                    "of columns and fit the parabola y = y0 + c1 x + c2 x^2; print c1 and c2 with their standard "
                    "errors. With --write, set 'curvature: [c1, c2]' of the detector's hrixs function in the config "
                    "(comments and the rest of the file kept) and save a figure of the line and the fit. The dark: "
                    "smd_dark's camera dark file of the dark run if it exists, else the dark run characterised here.",
        epilog="example: smd_hrixs curvature -p 2937 -r 712 -c producer.yaml --detector hrixs --write")
    add_run_arguments(cur, run_help="the elastic-line run", config_required=True,
                      config_help="producer YAML config: proposal, data_root, calib_dir and the camera detector "
                                  "(type: camera, camera, shape, dark_run, its hrixs function)")
    cur.add_argument("--detector", required=True, help="name of the camera detector in the config")
    cur.add_argument("--function", help="name of the hrixs function to write (default: the detector's only one)")
    cur.add_argument("--dark-run", type=int, help="dark run (default: the detector's dark_run)")
    cur.add_argument("--write", action="store_true",
                     help="write the curvature into the config and save the figure")
    cur.add_argument("--plot", type=Path,
                     help="PNG of the elastic line and the fit (default with --write: "
                          "hrixs_curvature_p<proposal>_r<run>_<detector>.png next to the config)")
    cur.add_argument("--columns-per-slice", type=int, default=16,
                     help="columns summed per slice for the line's centre (default 16)")
    cur.add_argument("--rows", type=int, nargs=2, metavar=("FIRST", "STOP"),
                     help="rows to search for the line (default all)")
    cur.add_argument("--max-trains", type=int, help="use only the first K trains")
    add_common_arguments(cur)
    return parser


def _curvature(args: argparse.Namespace) -> int:
    from smalldata.errors import SmallDataError
    from smalldata.spectro.camerasetup import find_function, load_camera_setup
    from smalldata.spectro.configedit import write_function_values
    from smalldata.spectro.elastic import curvature_from_run

    if args.columns_per_slice < 1:
        raise SmallDataError(f"--columns-per-slice {args.columns_per_slice}: give a positive number of columns")
    setup = load_camera_setup(args.config, args.detector, args.proposal, args.dark_run)
    name = None
    if args.write or args.function is not None:
        where, entry = find_function(setup.entry, args.detector, "hrixs", args.function)
        name = entry.get("name", entry.get("type"))
    plot = args.plot
    if plot is None and args.write:
        plot = setup.config_path.parent / f"hrixs_curvature_p{setup.proposal:06d}_r{args.run:04d}_{args.detector}.png"
    if plot is not None and not Path(plot).resolve().parent.is_dir():
        raise SmallDataError(f"--plot {plot}: folder {Path(plot).resolve().parent} does not exist")
    rows = tuple(args.rows) if args.rows else None
    fit = curvature_from_run(setup, args.run, args.columns_per_slice, rows, args.max_trains)
    (c1, c2), (e1, e2, ey) = (fit.curvature.c1, fit.curvature.c2), fit.errors
    from smalldata.spectro.figures import plot_curvature, publish_with

    where = publish_with(plot, lambda part: plot_curvature(fit, part), lambda: write_function_values(
        setup.config_path, args.detector, "hrixs", name, {"curvature": [c1, c2]}) if args.write else None)
    if not args.quiet:
        print(f"run {args.run}, detector {args.detector} ({fit.n_trains} trains, {fit.dark}): "
              f"c1 = {c1:.6g} ± {e1:.2g} rows per column, c2 = {c2:.6g} ± {e2:.2g} rows per column², "
              f"line at row {fit.y0:.3f} ± {ey:.2g} at column 0 ({len(fit.x)} slices)")
        if args.write:
            print(f"wrote curvature: [{c1!r}, {c2!r}] into {where} of {setup.config_path}")
        if plot is not None:
            print(f"figure: {plot}")
    return 0


def _body(args: argparse.Namespace) -> int:
    return {"curvature": _curvature}[args.command](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_hrixs``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
