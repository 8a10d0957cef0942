"""smd_boz: determine the BOZ corrections (ROIs, flat field, non-linearity) from an empty-membrane run."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main

log = logging.getLogger("smalldata.smd_boz")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="smd_boz",
        description="Determine the corrections of a BOZ (beam-splitting off-axis zone plate) measurement from a "
                    "run on three empty (or broken) membranes: the three beam ROIs n, 0, p on one module, the "
                    "flat field between the orders (planes fitted to n/0 and p/0) and the DSSC non-linearity "
                    "(a 512-entry lookup table). Writes a versioned JSON file with every parameter used, and "
                    "diagnostic PNGs. Run under 'mpirun -n N smd_boz ...'; the result does not depend on N. "
                    "The dark constants come from smd_dark (-d).",
        epilog="example: mpirun -n 8 smd_boz -p 2937 -d 615 -r 614 -g 3 -m 15 -c configs/boz.yaml")
    add_run_arguments(parser, run_help="run on three empty membranes",
                      config_help="producer YAML config: proposal, data_root, calib_dir, the detector (mask, gain) "
                                  "and its boz function (module, rois, corrections file name)")
    parser.add_argument("-d", "--dark-run", type=int, required=True,
                        help="dark run whose constants smd_dark wrote (pedestal, bad pixels)")
    parser.add_argument("-g", "--gain", type=float, required=True,
                        help="DSSC gain in photons per ADU bin (as the SCS ToolBox's boz_parameters_job.sh -g); "
                             "the boz function's sums are in photons")
    parser.add_argument("-m", "--module", type=int, default=None,
                        help="module with the three beams (default: the boz function's module in the config, "
                             "else 15)")
    parser.add_argument("-t", "--rois-threshold", type=float, default=1.0,
                        help="ADU: mean-image pixels above it are beam pixels (default 1)")
    parser.add_argument("-s", "--sat-level", type=int, default=500,
                        help="raw value from which a pixel is saturated; such frames are left out (default 500)")
    parser.add_argument("--ff-symmetric", action="store_true", help="mirror-symmetric flat-field planes for n and p")
    parser.add_argument("--ff-prod-th", type=float, nargs=2, default=(0.05, float("inf")), metavar=("LOW", "HIGH"),
                        help="flat-field domain: product of the orders as a fraction of its 99.9th percentile "
                             "(default 0.05 inf)")
    parser.add_argument("--ff-ratio-th", type=float, nargs=2, default=(0.2, 5.0), metavar=("LOW", "HIGH"),
                        help="flat-field domain: ratio of the orders (default 0.2 5)")
    parser.add_argument("--nl-points", type=int, default=12, help="control points of the lookup table (default 12)")
    parser.add_argument("--nl-low", type=float, default=100.0,
                        help="raw value up to which the response is linear (above the pedestals; default 100)")
    parser.add_argument("--nl-high", type=float, default=511.0, help="upper end point of the table (default 511)")
    parser.add_argument("--nl-alpha", type=float, default=1e-11,
                        help="weight of the penalty on the deviation from a linear response (default 1e-11)")
    parser.add_argument("--nl-classes", type=int, default=3,
                        help="classes of pixel positions (by brightness) whose ratios are fitted separately "
                             "(default 3)")
    parser.add_argument("--nl-bins", type=int, default=64,
                        help="intensity bins whose frames are summed for the table fit (default 64)")
    parser.add_argument("--error-groups", type=int, default=8,
                        help="groups of trains (train id modulo) whose jackknife gives the errors of the table and "
                             "of the flat field; 1: pixel-scatter errors only (default 8)")
    parser.add_argument("--min-frames", type=int, default=100, help="fewest unsaturated frames (default 100)")
    parser.add_argument("--max-trains", type=int, default=None, help="use only the first K trains")
    parser.add_argument("--detector", help="detector name in the config (default: the only one, else dssc)")
    parser.add_argument("--output", type=Path,
                        help="corrections file (default: the boz function's 'corrections' in calib_dir, else "
                             "<calib_dir>/boz_p<proposal>_r<run>_m<module>_<det>.json)")
    parser.add_argument("--plots", type=Path, help="folder of the diagnostic PNGs (default: next to the file)")
    parser.add_argument("--no-plots", action="store_true", help="write no figures")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corrections file")
    add_common_arguments(parser)
    return parser


def _boz_entry(det_cfg: dict) -> dict:
    """The first function of type boz in the detector's config (empty if none)."""
    for spec in det_cfg.get("functions") or []:
        if isinstance(spec, dict) and spec.get("type") == "boz":
            return spec
    return {}


def _body(args: argparse.Namespace) -> int:
    from smalldata.boz.corrections import corrections_path
    from smalldata.boz.determine import BozSettings, determine_corrections
    from smalldata.calib.dark import find_dark_file
    from smalldata.calib.detobject import DetObject
    from smalldata.config.yamlfile import load_yaml
    from smalldata.errors import ConfigError, DataError
    from smalldata.io.runaccess import RunAccess
    from smalldata.parallel import mpi

    from .smd_dark import dark_settings_from_config

    comm = mpi.get_comm()
    t0 = time.monotonic()
    settings = dark_settings_from_config(args.config, args.detector)
    proposal = args.proposal if args.proposal is not None else settings.proposal
    if proposal is None:
        raise ConfigError("proposal", "no proposal number; pass -p or set 'proposal:' in the config")
    raw = load_yaml(args.config) if args.config else {}
    det_cfg = dict((raw.get("detectors") or {}).get(settings.detector) or {})
    entry = _boz_entry(det_cfg)
    module = args.module if args.module is not None else int(entry.get("module", 15))
    rois = entry.get("rois")
    boz = BozSettings(module=module, photons_per_adu=args.gain, rois_threshold=args.rois_threshold, rois=rois,
                      sat_level=args.sat_level, ff_symmetric=args.ff_symmetric, ff_prod_th=tuple(args.ff_prod_th),
                      ff_ratio_th=tuple(args.ff_ratio_th), nl_points=args.nl_points, nl_low=args.nl_low,
                      nl_high=args.nl_high, nl_alpha=args.nl_alpha, nl_classes=args.nl_classes,
                      nl_bins=args.nl_bins, error_groups=args.error_groups, min_frames=args.min_frames,
                      max_trains=args.max_trains)
    calib_dir = settings.calib_dir
    if args.output is not None:
        out = args.output.resolve()
    elif entry.get("corrections"):
        out = Path(entry["corrections"]) if Path(entry["corrections"]).is_absolute() \
            else calib_dir / entry["corrections"]
    else:
        out = corrections_path(calib_dir, proposal, args.run, module, settings.detector)

    def check_output():
        if comm.Get_rank() == 0 and out.exists() and not args.overwrite:
            raise DataError(f"BOZ corrections {out} exist already; pass --overwrite to replace them")

    mpi.agree(check_output, comm)
    dark_path = find_dark_file(calib_dir, proposal, args.dark_run, settings.detector)
    det_cfg.pop("modules", None)
    det = mpi.agree(lambda: DetObject.from_config(settings.detector, det_cfg, dark_path, modules=[module]), comm)
    access = mpi.agree(lambda: RunAccess.open(proposal, args.run, settings.data_root), comm)
    if module not in access.available_modules():
        raise DataError(f"run {args.run} has no data of module {module} (modules {list(access.available_modules())})"
                        "; pass the module with the beams as -m")
    if comm.Get_rank() == 0:
        log.info("BOZ corrections of run %d (dark %d), module %d, %d trains on %d rank(s) -> %s", args.run,
                 args.dark_run, module, len(access.train_ids), comm.Get_size(), out)
    context = {"command": " ".join(shlex.quote(a) for a in sys.argv), "config": str(args.config or ""),
               "config_text": args.config.read_text() if args.config else "", "dark_file": str(dark_path),
               "n_ranks": comm.Get_size()}
    result = determine_corrections(access, det, boz, proposal, args.run, args.dark_run, settings.detector, comm,
                                   context)
    if comm.Get_rank() == 0:
        result.corrections.summary["wall_time_s"] = time.monotonic() - t0
        result.corrections.save(out, overwrite=args.overwrite)
        if not args.no_plots:
            from smalldata.boz.plots import write_figures

            write_figures(result, args.plots or out.parent, out.stem)
        c = result.corrections
        if not args.quiet:
            dec = {k: max(abs(v - 1) for v in d) for k, d in c.summary["ratio_deciles_after"].items()}
            print(f"wrote {out}: ROIs {c.rois}, flat field n {[round(float(v), 5) for v in c.flat_field.n]} "
                  f"p {[round(float(v), 5) for v in c.flat_field.p]}, table up to "
                  f"{abs(c.nonlinearity.values).max():.1f} ADU from {c.summary['n_unsaturated']} unsaturated frames; "
                  f"ratio deciles within {100 * max(dec.values()):.2f}% of their median; "
                  f"{time.monotonic() - t0:.1f} s")
    comm.Barrier()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_boz``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
