"""smd_producer: turn a run into one small-data HDF5 file (run it under mpirun for several ranks)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, run_main


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_producer``."""
    parser = argparse.ArgumentParser(
        prog="smd_producer",
        description="Process a European XFEL run into a compact HDF5 file: one row per detector frame, "
                    "the outputs of the configured analysis functions, point data (XGM, scan values), "
                    "and /UserDataCfg recording how every number was made. "
                    "Run under 'mpirun -n N smd_producer ...' to use N ranks; the output does not depend on N.",
        epilog="example: mpirun -n 2 smd_producer -r 614 -c configs/producer.yaml")
    parser.add_argument("-r", "--run", type=int, help="run number (required unless --bridge)")
    parser.add_argument("-c", "--config", type=Path, required=True, help="producer YAML config")
    parser.add_argument("-p", "--proposal", type=int, help="proposal number (default: from the config)")
    parser.add_argument("--output", type=Path, help="output file (default: <output_dir>/r<run>.h5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--max-trains", type=int, metavar="K", help="only the first K trains (a quick look)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="frames per batch (default: from the config)")
    add_common_arguments(parser)
    from smalldata.live.cli import add_live_arguments

    add_live_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    from smalldata.config.producer import ProducerConfig
    from smalldata.errors import SmallDataError
    from smalldata.pipeline.eventloop import run_producer
    from smalldata.pipeline import shutdown
    from smalldata.pipeline.mpi import get_comm

    if args.bridge is not None:  # the live stream: its own loop (docs/live.md)
        from smalldata.live.cli import live_body

        return live_body(args)
    if args.run is None:
        raise SmallDataError("-r/--run is required (or --bridge tcp://HOST:PORT for a live stream)")
    if args.proposal is not None and args.proposal < 1:
        raise SmallDataError(f"-p/--proposal must be a positive proposal number, got {args.proposal}")
    if args.max_trains is not None and args.max_trains < 1:
        raise SmallDataError(f"--max-trains must be >= 1, got {args.max_trains}")
    if args.batch_size is not None and args.batch_size < 1:
        raise SmallDataError(f"--batch-size must be >= 1, got {args.batch_size}")
    shutdown.install()  # a signal stops the run at its next check, never half-way through a step
    comm = get_comm()
    config = ProducerConfig.from_file(args.config)
    summary = run_producer(config, args.run, proposal=args.proposal, output=args.output,
                           overwrite=args.overwrite, max_trains=args.max_trains, batch_size=args.batch_size,
                           command=shlex.join(sys.argv), comm=comm)
    if shutdown.received() is not None and comm.Get_rank() == 0:
        print(f"smd_producer: a stop signal came after {summary.output} was complete; it is published",
              file=sys.stderr)
    if comm.Get_rank() == 0 and not args.quiet:
        print(f"wrote {summary.output}: {summary.rows} rows from {summary.trains} trains "
              f"({summary.skipped} skipped), {summary.datasets} datasets, {summary.n_ranks} rank(s), "
              f"{summary.elapsed:.1f} s, {summary.frames_per_second:.0f} frames/s")
        for line in summary.losses:
            print(f"  lost: {line}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_producer``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
