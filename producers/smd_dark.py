"""smd_dark: characterise a dark run (pedestal, noise, bad pixels) and write its constants file."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from smalldata.calib.badpixels import DarkThresholds

from ._cli import add_common_arguments, add_run_arguments, run_main

log = logging.getLogger("smalldata.smd_dark")


@dataclass
class DarkSettings:
    """What ``smd_dark`` takes from the producer config.

    Attributes
    ----------
    proposal : int or None
    data_root : Path or None
        Root of the raw data tree (None: ``$EXTRA_DATA_DATA_ROOT``, then extra-data's default).
    calib_dir : Path
        Folder of the dark constants files.
    detector : str
        Detector name (in the file name).
    modules : tuple of int or None
        Modules to characterise (None: all in the run).
    thresholds : DarkThresholds
    """

    proposal: Optional[int]
    data_root: Optional[Path]
    calib_dir: Path
    detector: str
    modules: Optional[Tuple[int, ...]]
    thresholds: DarkThresholds


def dark_settings_from_config(path: Optional[os.PathLike], detector: Optional[str] = None) -> DarkSettings:
    """Read the keys ``smd_dark`` needs from a producer config (all of them optional without a file).

    Reads ``proposal``, ``data_root`` and ``calib_dir`` (relative to the config file) and
    ``detectors.<name>.modules`` and ``detectors.<name>.dark`` (thresholds). ``detector``
    picks the detector; default the only one configured, or ``dssc``.
    """
    from smalldata.config.keys import DETECTOR_SCHEMA, TOP_SCHEMA
    from smalldata.config.names import check_name, name_problem
    from smalldata.config.schema import apply_schema
    from smalldata.config.yamlfile import load_yaml, resolve_path
    from smalldata.errors import ConfigError, SmallDataError

    if detector is not None and name_problem(detector):  # the name is part of the constants' file name
        raise SmallDataError(f"--detector: {name_problem(detector)}; give the detector's name in the config "
                             "(e.g. dssc)")
    if path is None:
        return DarkSettings(None, None, Path("calib").resolve(), detector or "dssc", None, DarkThresholds())
    path = Path(path).resolve()
    raw = load_yaml(path)
    try:  # the producer's own key tables, for the keys smd_dark reads (the config is made for the producer)
        top = apply_schema(raw, TOP_SCHEMA, "", keys=("proposal", "data_root", "calib_dir", "detectors"))
        detectors = top["detectors"]
        if not detectors:
            raise ConfigError("detectors", "is required: a mapping with one entry per detector, "
                                           "e.g. 'dssc: {dark_run: 615}'")
        if detector is None:
            detector = next(iter(detectors)) if len(detectors) == 1 else "dssc"
        if detector not in detectors:
            raise ConfigError("detectors", f"no detector {detector!r} (detectors: {', '.join(map(str, detectors))}); "
                                           "choose one with --detector")
        det = apply_schema(detectors[detector], DETECTOR_SCHEMA, f"detectors.{detector}", keys=("modules", "dark"))
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.message} (in {path})") from None
    try:
        check_name(detector, f"detectors.{detector}")
        data_root = resolve_path(path.parent, top["data_root"], "data_root") if top["data_root"] else None
        calib_dir = resolve_path(path.parent, top["calib_dir"], "calib_dir")
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.message} (in {path})") from None
    modules = tuple(sorted(det["modules"])) if det["modules"] is not None else None
    thresholds = DarkThresholds.from_mapping(det["dark"], f"detectors.{detector}.dark")
    return DarkSettings(top["proposal"], data_root, calib_dir, str(detector), modules, thresholds)


def parse_modules(text: str) -> Tuple[int, ...]:
    """``"0,3,15"`` or ``"0-3,15"`` -> (0, 3, 15) / (0, 1, 2, 3, 15)."""
    from smalldata.errors import SmallDataError
    from smalldata.simulate.config import parse_int_list

    values = set(parse_int_list(text, "--modules"))
    if min(values) < 0 or max(values) > 15:
        raise SmallDataError(f"--modules {text!r}: give module numbers 0..15")
    return tuple(sorted(values))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_dark``."""
    parser = argparse.ArgumentParser(
        prog="smd_dark",
        description="Characterise a DSSC dark run: pedestal and noise per module, memory cell and pixel, "
                    "and bad pixels (dead, hot, noisy, pedestal out of range). Writes "
                    "<calib_dir>/dark_p<proposal>_r<run>_<det>.h5, which smd_producer uses for the detector's "
                    "dark_run. Run under 'mpirun -n N smd_dark ...' to use N ranks; the file does not depend on N.",
        epilog="example: mpirun -n 4 smd_dark -p 2937 -r 615 -c configs/producer.yaml")
    add_run_arguments(parser, run_help="run number of the dark run",
                      config_help="producer YAML config: proposal, data_root, calib_dir, detectors.<det>.modules "
                                  "and detectors.<det>.dark thresholds")
    parser.add_argument("--data-root", type=Path,
                        help="root of the raw data tree (default: the config's data_root, else $EXTRA_DATA_DATA_ROOT)")
    parser.add_argument("--calib-dir", type=Path, help="folder for the constants (default: the config's calib_dir, "
                                                      "else ./calib)")
    parser.add_argument("--modules", help="modules to characterise, e.g. 0,3,15 or 0-15 (default: the config's, "
                                          "else all in the run)")
    parser.add_argument("--detector", help="detector name in the config and the file name (default: the only "
                                           "configured detector, else dssc)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing constants file")
    parser.add_argument("--chunk-frames", type=int, default=1024, metavar="N",
                        help="frames read at once per module (128 kB each; default 1024)")
    add_common_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    import numpy as np

    from smalldata.calib.dark import characterise_dark_to_file, dark_file_path
    from smalldata.errors import ConfigError, DataError, SmallDataError
    from smalldata.io.runaccess import RunAccess
    from smalldata.parallel import mpi, shutdown

    shutdown.install()  # a signal stops the dark between chunks; the temporary file is removed
    comm = mpi.get_comm()
    settings = dark_settings_from_config(args.config, args.detector)
    proposal = args.proposal if args.proposal is not None else settings.proposal
    if proposal is None:
        where = f"in {args.config}" if args.config else "without a config (-c)"
        raise ConfigError("proposal", f"no proposal number {where}; pass -p or set 'proposal:' in the config")
    if args.proposal is not None and args.proposal < 1:
        raise SmallDataError(f"-p/--proposal must be a positive proposal number, got {args.proposal}")
    if args.chunk_frames < 1:
        raise SmallDataError(f"--chunk-frames must be >= 1, got {args.chunk_frames}")
    data_root = args.data_root or settings.data_root
    calib_dir = args.calib_dir.resolve() if args.calib_dir else settings.calib_dir
    modules = parse_modules(args.modules) if args.modules else settings.modules
    out = dark_file_path(calib_dir, proposal, args.run, settings.detector)

    def check_output():
        if comm.Get_rank() == 0 and out.exists() and not args.overwrite:
            raise DataError(f"dark constants {out} exist already; pass --overwrite to replace them")

    mpi.agree(check_output, comm)
    access = mpi.agree(lambda: RunAccess.open(proposal, args.run, data_root), comm)
    if comm.Get_rank() == 0:
        log.info("dark run %d of proposal %d: %d trains on %d rank(s) -> %s", args.run, proposal,
                 len(access.train_ids), comm.Get_size(), out)
    summary = characterise_dark_to_file(access, out, modules, settings.thresholds, comm, proposal=proposal,
                                        run_number=args.run, detector=settings.detector,
                                        chunk_frames=args.chunk_frames, overwrite=args.overwrite,
                                        progress=not args.quiet)
    if comm.Get_rank() == 0 and not args.quiet:
        n_bad = int(np.count_nonzero(summary.status_mask))
        print(f"wrote {out}: modules {list(map(int, summary.modules))}, {len(summary.cell_ids)} cells, "
              f"{int(summary.n_frames.min())}..{int(summary.n_frames.max())} frames per cell, "
              f"{n_bad} bad pixels ({100.0 * n_bad / summary.status_mask.size:.3f}%)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_dark``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
