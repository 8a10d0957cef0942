"""smd_viking: Viking constants and results from raw runs: ``calibrate`` (energy axis from monochromator
runs) and ``xas`` (absorption of a sample run against a reference run)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main

log = logging.getLogger("smalldata.smd_viking")

#: Baseline degree without --baseline-degree and without the function's baseline_degree (the function's default)
BASELINE_DEGREE = 1

CONFIG_HELP = ("producer YAML config: proposal, data_root, calib_dir and the camera detector (type: camera, camera: "
               "newton, shape, dark_run) with its viking function (rows, baseline_degree, signal_range: eV with a "
               "calibration, columns without; calibration)")


def _shared(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", required=True, help="name of the camera detector in the config")
    p.add_argument("--function", help="name of the viking function (default: the detector's only one)")
    p.add_argument("--dark-run", type=int, help="dark run (default: the detector's dark_run)")
    p.add_argument("--rows", type=int, nargs=2, metavar=("FIRST", "STOP"),
                   help="rows summed into the spectrum (default: the function's rows, else all)")
    p.add_argument("--baseline-degree", type=int,
                   help="degree of the baseline polynomial (default: the function's baseline_degree, else 1)")
    p.add_argument("--plot", type=Path, help="PNG of the result (default: next to the config or the output)")
    p.add_argument("--max-trains", type=int, help="use only the first K trains of each run")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="smd_viking", description="Viking spectrometer (Andor Newton) from raw runs (docs/detectors/viking.md).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cal = sub.add_parser(
        "calibrate", help="energy calibration from monochromator runs",
        description="For each monochromator run: the mean spectrum in photoelectrons (dark-subtracted), its baseline "
                    "fitted outside a window around the line and removed, the line's peak column, and the run's "
                    "monochromator energy (SA3_XTD10_MONO/MDL/PHOTON_ENERGY actualEnergy). A polynomial of the "
                    "column through the (peak, energy) points, refused if not monotonic over the camera's columns. "
                    "With --write, 'calibration: [c0, c1, ...]' (ascending powers, eV) of the detector's viking "
                    "function in the config, and a figure of the peaks, the fit and its residuals.",
        epilog="example: smd_viking calibrate -p 2937 -r 730-734 -c producer.yaml --detector viking --write")
    add_run_arguments(cal, run_help="monochromator runs, e.g. 101,102,103 or 101-105", run_range=True,
                      config_required=True, config_help=CONFIG_HELP)
    _shared(cal)
    cal.add_argument("--degree", type=int, default=2, help="polynomial degree (default 2)")
    cal.add_argument("--write", action="store_true", help="write the calibration into the config and save the figure")
    cal.add_argument("--peak-window", type=int, default=50,
                     help="half width (columns) around each line left out of its baseline fit (default 50)")
    cal.add_argument("--energy-tolerance", type=float, default=0.1,
                     help="eV the monochromator energy may move within a run (default 0.1)")
    add_common_arguments(cal)
    xas = sub.add_parser(
        "xas", help="absorption of a sample run against a reference run",
        description="Per-train spectra of both runs in photoelectrons, their baseline (fitted outside the signal "
                    "range) removed; absorption -log(It/I0)/thickness per column on the energy axis of the viking "
                    "function's calibration, with its standard deviation (one pair of trains) and standard error "
                    "(the means); the edge position and step printed, the result written to an HDF5 file "
                    "(energy, absorption, std, sem, it, i0 with units) and a figure.",
        epilog="example: smd_viking xas -p 2937 --sample 722 --reference 721 -c producer.yaml --detector viking")
    xas.add_argument("--sample", type=int, required=True, help="run through the sample (It)")
    xas.add_argument("--reference", type=int, required=True, help="run without the sample (I0)")
    xas.add_argument("-p", "--proposal", type=int, help="proposal number (default: from the config)")
    xas.add_argument("-c", "--config", type=Path, required=True, help=CONFIG_HELP)
    _shared(xas)
    xas.add_argument("--thickness", type=float,
                     help="sample thickness (m): absorption in 1/m (default: the absorbance -log(It/I0))")
    xas.add_argument("--signal-range", type=float, nargs=2, metavar=("FIRST", "LAST"),
                     help="columns holding the beam, left out of the baseline fit (default: the function's "
                          "signal_range, in eV when it has a calibration)")
    xas.add_argument("--calibration", type=float, nargs="+", metavar="C",
                     help="column-to-energy coefficients c0 c1 ... in eV (default: the function's calibration)")
    xas.add_argument("--min-fraction", type=float, default=0.1,
                     help="keep the columns where the mean reference reaches this fraction of its maximum (default 0.1)")
    xas.add_argument("--step-gap", type=float, default=2.0, help="eV between the edge and the step's ranges (default 2)")
    xas.add_argument("--step-width", type=float, default=1.5, help="eV width of the step's ranges (default 1.5)")
    xas.add_argument("--output", type=Path, help="HDF5 result (default: viking_xas_p<proposal>_r<sample>_r<reference>"
                                                 "_<detector>.h5 next to the config)")
    xas.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_common_arguments(xas)
    return parser


def _entry(setup, args, required: bool):
    """The viking function entry's options (empty when there is none and it is not required)."""
    from smalldata.errors import ConfigError
    from smalldata.spectro.camerasetup import find_function
    from smalldata.spectro.vikingruns import viking_entry

    try:
        where, entry = find_function(setup.entry, args.detector, "viking", args.function)
    except ConfigError:
        if required or args.function is not None:
            raise
        return viking_entry(None, ""), None
    return viking_entry(entry, where), entry.get("name", entry.get("type"))


def _options(args, opts):
    rows = tuple(args.rows) if args.rows else opts.rows
    degree = args.baseline_degree if args.baseline_degree is not None else \
        (opts.baseline_degree if opts.baseline_degree is not None else BASELINE_DEGREE)
    return rows, degree


def _checked_plot(plot: Optional[Path]) -> Optional[Path]:
    from smalldata.errors import SmallDataError

    if plot is not None and not Path(plot).resolve().parent.is_dir():
        raise SmallDataError(f"--plot {plot}: folder {Path(plot).resolve().parent} does not exist")
    return plot


def _calibrate(args: argparse.Namespace) -> int:
    from smalldata.beamtime.runrange import parse_run_range
    from smalldata.spectro.camerasetup import load_camera_setup
    from smalldata.spectro.configedit import write_function_values
    from smalldata.spectro.vikingruns import calibrate_runs

    runs = parse_run_range(args.runs)
    setup = load_camera_setup(args.config, args.detector, args.proposal, args.dark_run)
    opts, name = _entry(setup, args, required=args.write)
    rows, degree = _options(args, opts)
    plot = args.plot
    if plot is None and args.write:
        plot = setup.config_path.parent / (f"viking_calibration_p{setup.proposal:06d}_r{runs[0]:04d}-{runs[-1]:04d}_"
                                           f"{args.detector}.png")
    _checked_plot(plot)
    cal = calibrate_runs(setup, runs, args.degree, rows, degree, args.peak_window, opts.preamp_gain,
                         opts.high_capacity, args.energy_tolerance, args.max_trains)
    coefficients = [float(c) for c in cal.calibration.coefficients]
    from smalldata.spectro.figures import plot_calibration, publish_with

    values = {"calibration": coefficients}
    if opts.signal_range is not None and opts.calibration is None:
        # the function reads signal_range in eV once it has a calibration: convert the columns
        values["signal_range"] = list(opts.signal_range_in_ev(cal.calibration))
    where = publish_with(plot, lambda part: plot_calibration(cal, part), lambda: write_function_values(
        setup.config_path, args.detector, "viking", name, values) if args.write else None)
    plot = None if plot is None else Path(plot).resolve()
    if not args.quiet:
        for r, e, p, d, n in zip(cal.runs, cal.energies, cal.peaks, cal.residuals, cal.n_trains):
            print(f"run {r}: {e:.3f} eV, peak at column {p:.2f} ({n} trains), fit - mono {1e3 * d:+.1f} meV")
        e_lo, e_hi = cal.calibration(list(cal.calibration.pixel_range))
        print(f"calibration (degree {args.degree}, {cal.dark}): E = {' + '.join(f'{c:.6g} p^{k}' for k, c in enumerate(coefficients))} "
              f"eV, monotonic over columns 0..{int(cal.calibration.pixel_range[1])} ({e_lo:.2f} to {e_hi:.2f} eV)")
        if args.write:
            print(f"wrote calibration: {coefficients} into {where} of {setup.config_path}")
            if "signal_range" in values:
                print(f"signal_range columns {list(opts.signal_range)} written in eV: {values['signal_range']}")
        if plot is not None:
            print(f"figure: {plot}")
    return 0


def _xas(args: argparse.Namespace) -> int:
    from smalldata.errors import ConfigError
    from smalldata.spectro.camerasetup import load_camera_setup
    from smalldata.spectro.xasruns import default_xas_path, write_xas, xas_from_runs

    setup = load_camera_setup(args.config, args.detector, args.proposal, args.dark_run)
    opts, _ = _entry(setup, args, required=args.calibration is None or args.signal_range is None)
    rows, degree = _options(args, opts)
    calibration, cal_where = (tuple(args.calibration), "--calibration") if args.calibration else \
        (opts.calibration, f"{opts.where}.calibration")
    if calibration is None:
        raise ConfigError(f"{opts.where}.calibration", "no energy calibration; run 'smd_viking calibrate ... --write' "
                                                       "on monochromator runs or pass --calibration")
    signal_range = tuple(args.signal_range) if args.signal_range else opts.signal_columns(setup.preset.shape[1])
    if signal_range is None:
        raise ConfigError(f"{opts.where}.signal_range", "no signal range (columns holding the beam); set it in the "
                                                        "viking function or pass --signal-range")
    out = (args.output or default_xas_path(setup, args.sample, args.reference)).resolve()
    if out.exists() and not args.overwrite:
        raise ConfigError("--output", f"{out} exists; pass --overwrite or another --output")
    if not out.parent.is_dir():
        raise ConfigError("--output", f"folder {out.parent} does not exist; create it or give another --output")
    plot = Path(_checked_plot(args.plot) or out.with_suffix(".png")).resolve()
    result = xas_from_runs(setup, args.sample, args.reference, calibration, signal_range, degree, rows, args.thickness,
                           args.min_fraction, args.step_gap, args.step_width, opts.preamp_gain, opts.high_capacity,
                           args.max_trains, cal_where)
    from smalldata.spectro.figures import plot_xas, publish_with

    out = publish_with(plot, lambda part: plot_xas(result, part), lambda: write_xas(out, result, setup, args.overwrite))
    if not args.quiet:
        x = result.xas
        print(f"XAS of run {args.sample} against run {args.reference} ({x.n_sample} and {x.n_reference} trains, "
              f"{len(x.energy)} points {x.energy[0]:.2f} to {x.energy[-1]:.2f} eV, {result.dark}): edge at "
              f"{result.edge:.3f} eV, step {result.step:.4g} ({'absorbance' if result.thickness is None else '1/m'})")
        print(f"wrote {out}; figure: {plot}")
    return 0


def _body(args: argparse.Namespace) -> int:
    return {"calibrate": _calibrate, "xas": _xas}[args.command](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_viking``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
