"""runSmallDataAna: an interactive IPython session on a run's small-data file."""
from __future__ import annotations

import argparse
import code
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, run_main

BANNER = """smalldata interactive session, run {run}: {ana}
  ana.keys()                                  per-event datasets
  ana["dssc/roi_spec_sum"]                    one of them as an array
  sel = ana.cut("xgm/sa3_intensity", 500)     event selection
  ana.binned("dssc/roi_spec_sum", by="scan/delay", bins=10, normalise_by="xgm/sa3_intensity")
  img = ana.AvImage("dssc", selection=sel)    average calibrated image from the raw data
  ana.plotAvImage(img); ana.roi_stats(img, module=3, roi=[0, 64, 0, 128])
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runSmallDataAna",
        description="Open the small-data file of a run in an IPython session with 'ana' (a SmallDataAna) "
                    "ready: select events, bin against scan variables, average detector images from the raw "
                    "data to tune ROIs, centres and masks.")
    parser.add_argument("-r", "--run", type=int, required=True, help="run number")
    parser.add_argument("-p", "--proposal", type=int, help="proposal (default: from the config)")
    parser.add_argument("-c", "--config", type=Path, default=Path("producer.yaml"),
                        help="producer config (default: producer.yaml)")
    parser.add_argument("--output", type=Path, help="small-data file (default: the config's output_dir/r<run>.h5)")
    parser.add_argument("--no-shell", action="store_true", help="print the summary and exit (for scripts)")
    add_common_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    from smalldata.ana.session import SmallDataAna

    ana = SmallDataAna.from_run(args.run, args.config, args.output)
    if args.proposal is not None and args.proposal != ana.proposal:
        from smalldata.errors import SmallDataError

        raise SmallDataError(f"{ana.path} is of proposal {ana.proposal}, not {args.proposal}")
    banner = BANNER.format(run=args.run, ana=ana)
    if args.no_shell:
        print(banner)
        return 0
    import numpy as np

    namespace = {"ana": ana, "np": np}
    try:
        from IPython import start_ipython
    except ImportError:
        code.interact(banner=banner, local=namespace)
        return 0
    print(banner)
    start_ipython(argv=[], user_ns=namespace, display_banner=False)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``runSmallDataAna``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
