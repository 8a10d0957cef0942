"""smd_producer: turn a run into one small-data HDF5 file (run it under mpirun for several ranks)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_producer``."""
    parser = argparse.ArgumentParser(
        prog="smd_producer",
        description="Process a European XFEL run into a compact HDF5 file: one row per detector frame, "
                    "the outputs of the configured analysis functions, point data (XGM, scan values), "
                    "and /UserDataCfg recording how every number was made. "
                    "Run under 'mpirun -n N smd_producer ...' to use N ranks; the output does not depend on N.",
        epilog="example: mpirun -n 2 smd_producer -r 614 -c configs/producer.yaml")
    add_run_arguments(parser, run_help="run number (required unless --bridge)", run_required=False,
                      config_required=True)
    parser.add_argument("--output", type=Path, help="output file (default: <output_dir>/r<run>.h5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--max-trains", type=int, metavar="K", help="only the first K trains (a quick look)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="frames per batch (default: from the config)")
    parser.add_argument("--stall-timeout", type=float, metavar="S",
                        help="name a rank on the console when it made no progress for S seconds "
                             "(default: the config's stall_timeout, 60 s)")
    parser.add_argument("--wait", type=float, nargs="?", const=3600.0, metavar="SECONDS",
                        help="first wait until the run's raw files are complete (exist, open, unchanged for "
                             "10 s), at most SECONDS (default 3600); then process")
    add_common_arguments(parser)
    from smalldata.live.cli import add_live_arguments

    add_live_arguments(parser)
    return parser


def _body(args: argparse.Namespace) -> int:
    from smalldata.config.producer import ProducerConfig
    from smalldata.errors import SmallDataError
    from smalldata.parallel import activity, shutdown
    from smalldata.parallel.mpi import get_comm
    from smalldata.parallel.sharedmem import mapped_segments
    from smalldata.pipeline.eventloop import run_producer
    from smalldata.pipeline.interrupts import describe, in_user_function

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
    if args.stall_timeout is not None and not args.stall_timeout > 0:
        raise SmallDataError(f"--stall-timeout must be > 0 seconds, got {args.stall_timeout}")
    if args.wait is not None and not args.wait > 0:
        raise SmallDataError(f"--wait must be a positive number of seconds, got {args.wait:g}")
    shutdown.install()  # a signal stops the run at its next check, or at once inside a user's function
    comm = get_comm()
    activity.add_temporaries(*mapped_segments())  # MPI's segments of this node, if this rank dies hard
    activity.note("reading the config")
    with shutdown.interruptible(lambda tb: describe(tb, phase="while reading the config"), in_user_function):
        config = ProducerConfig.from_file(args.config)  # builds the functions: users' __init__ runs here
    activity.set_stall_timeout(args.stall_timeout or config.settings["stall_timeout"])
    if args.wait is not None:
        from smalldata.beamtime.waitfiles import wait_on_rank0

        wait_on_rank0(args.proposal or config.proposal, args.run, config.settings["data_root"], args.wait, comm)
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
    """Entry point of ``smd_producer``.

    Under an MPI launcher the rank runs in a child process that this one watches
    (:mod:`smalldata.parallel.supervisor`): a rank that freezes or dies hard is named.
    """
    from smalldata.parallel.activity import DEFAULT_STALL_TIMEOUT
    from smalldata.parallel.supervisor import launched_rank, supervised

    parser = build_parser()
    rank = launched_rank()
    if rank is None:
        return run_main(_body, parser, argv)
    args = parser.parse_args(argv)  # --help and usage errors before the fork
    setup_logging(args.debug, args.quiet)
    return supervised(lambda: run_main(_body, parser, argv), rank, parser.prog,
                      stall_timeout=args.stall_timeout or DEFAULT_STALL_TIMEOUT)


if __name__ == "__main__":
    sys.exit(main())
