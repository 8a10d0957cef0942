"""smd_runs: the table of a proposal's runs from their outputs, printed and written as CSV and HDF5."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_runs``."""
    parser = argparse.ArgumentParser(
        prog="smd_runs",
        description="One row per run from the small-data outputs: trains and frames, frames kept and rejected "
                    "by reason, losses, mean XGM, the scan variable and its steps, the mean of each per-frame "
                    "scalar per frame label, the run's start and end, the config fingerprint and the "
                    "processing state. Writes <output_dir>/runs_p<proposal>.csv and .h5 and updates them "
                    "incrementally (only new or changed outputs are read).",
        epilog="example: smd_runs -p 2937 -c producer.yaml -r 610-640")
    add_run_arguments(parser, run_help="run range, e.g. 610-615,620 (default: every run with an output)",
                      run_range=True, run_required=False,
                      config_help="producer YAML config (output_dir, proposal, and the fingerprint the outputs "
                                  "should carry)")
    parser.add_argument("--output-dir", type=Path, help="folder of the outputs (default: the config's output_dir)")
    parser.add_argument("--no-slurm", action="store_true", help="do not ask SLURM for queued and running jobs")
    add_common_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    import shutil

    from smalldata.beamtime import slurm
    from smalldata.beamtime.fingerprint import config_fingerprint
    from smalldata.beamtime.runrange import parse_run_range
    from smalldata.beamtime.runtable import format_table, table_paths, update_table
    from smalldata.config.producer import ProducerConfig
    from smalldata.errors import SmallDataError

    runs = parse_run_range(args.runs) if args.runs is not None else None
    config = ProducerConfig.from_file(args.config) if args.config else None
    proposal = args.proposal or (config.proposal if config else None)
    if proposal is None:
        raise SmallDataError("no proposal: pass -p PROPOSAL or a config with 'proposal:' (-c)")
    output_dir = args.output_dir or (Path(config.settings["output_dir"]) if config else None)
    if output_dir is None:
        raise SmallDataError("no output folder: pass -c CONFIG (its output_dir) or --output-dir DIR")
    if not output_dir.is_dir():
        raise SmallDataError(f"output folder {output_dir} does not exist; check output_dir in the config "
                             "or --output-dir")
    current = config_fingerprint(config, proposal) if config else None
    queue = None
    if not args.no_slurm and shutil.which("squeue"):
        queue = slurm.queue_states()
    rows = update_table(output_dir, proposal, runs, current, queue, compare=config is not None)
    if not args.quiet:
        paths = table_paths(output_dir, proposal)
        print(format_table(rows))
        print(f"table of {len(rows)} run(s): {paths['csv']}, {paths['h5']}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_runs``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
