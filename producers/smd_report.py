"""smd_report: write a run's report, one self-contained HTML page with its figures."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, run_main

log = logging.getLogger("smalldata.smd_report")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_report``."""
    parser = argparse.ArgumentParser(
        prog="smd_report",
        description="Write the report of a run's small-data output: one HTML page with the XGM against train, "
                    "losses by reason, an ROI against the scan variable, the average image and the azimuthal "
                    "profile pumped minus unpumped, figures embedded (open it in a browser or post it to a logbook).")
    parser.add_argument("-r", "--run", type=int, help="run number (with -c: the output of that run)")
    parser.add_argument("-c", "--config", type=Path, help="producer config (finds the output of -r)")
    parser.add_argument("--output", type=Path, help="the small-data file itself (instead of -r and -c)")
    parser.add_argument("--html", type=Path, help="report file; default r<run>_report.html beside the output")
    add_common_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from smalldata.ana.session import SmallDataAna
    from smalldata.errors import SmallDataError

    if args.output is None and (args.run is None or args.config is None):
        raise SmallDataError("give the output file (--output FILE), or the run and its config (-r RUN -c CONFIG)")
    if args.output is not None:
        ana = SmallDataAna(args.output, config_path=args.config)
    else:
        ana = SmallDataAna.from_run(args.run, args.config)
    path = ana.report(args.html)
    if not args.quiet:
        print(f"wrote {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_report``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
