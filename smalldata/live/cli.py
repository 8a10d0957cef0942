"""``smd_producer --bridge``: the command-line options of the live producer and its run."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from smalldata.errors import SmallDataError


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--bridge`` and its options to ``smd_producer``'s parser."""
    live = parser.add_argument_group("live stream (docs/live.md)")
    live.add_argument("--bridge", metavar="tcp://HOST:PORT",
                      help="process the trains of this karabo-bridge stream instead of a run on disk "
                           "(-r is then optional: it only names the output)")
    live.add_argument("--sock", choices=("REQ", "SUB", "PULL"), default="REQ",
                      help="socket of the bridge client: REQ for a REP server (default; several ranks share "
                           "the trains), SUB for PUB, PULL for PUSH")
    live.add_argument("--timeout", type=float, default=10.0, metavar="S",
                      help="seconds without a train that end the run (default 10)")
    live.add_argument("--first-timeout", type=float, default=30.0, metavar="S",
                      help="seconds to wait for the first train (default 30)")
    live.add_argument("--publish", metavar="tcp://*:PORT",
                      help="re-publish every train's reduced rows as a karabo-bridge PUB server bound here "
                           "(source SMALLDATA/LIVE/OUTPUT; docs/live.md)")
    live.add_argument("--layout", choices=("auto", "modules", "stacked", "online"), default="auto",
                      help="detector layout of the stream: one source per module, stacked into "
                           "SCS_DET_DSSC1M-1/DET/APPEND, or the online pipeline's SCS_CDIDET_DSSC/CAL/APPEND_RAW "
                           "(modules, x, y, cells) (default: from the first train)")


def live_output(args: argparse.Namespace, config) -> Path:
    """``--output``, else ``<output_dir>/r<run>-live.h5`` (or ``live.h5`` without -r)."""
    if args.output is not None:
        return args.output
    name = f"r{args.run:04d}-live.h5" if args.run is not None else "live.h5"
    return Path(config.settings["output_dir"]) / name


def live_body(args: argparse.Namespace) -> int:
    """Run the live producer for parsed ``smd_producer`` arguments; returns the exit status."""
    from mpi4py import MPI

    from smalldata.config.producer import ProducerConfig
    from smalldata.live.producer import run_live

    for name in ("timeout", "first_timeout"):
        if getattr(args, name) <= 0:
            raise SmallDataError(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(args, name)}")
    if args.max_trains is not None and args.max_trains < 1:
        raise SmallDataError(f"--max-trains must be >= 1, got {args.max_trains}")
    if args.batch_size is not None and args.batch_size < 1:
        raise SmallDataError(f"--batch-size must be >= 1, got {args.batch_size}")
    config = ProducerConfig.from_file(args.config)
    comm = MPI.COMM_WORLD
    summary = run_live(config, args.bridge, live_output(args, config), sock=args.sock, overwrite=args.overwrite,
                       max_trains=args.max_trains, timeout=args.timeout, first_timeout=args.first_timeout,
                       layout=args.layout, run=args.run, proposal=args.proposal, command=shlex.join(sys.argv),
                       publish=args.publish, batch_size=args.batch_size, comm=comm)
    if comm.Get_rank() == 0:
        if not args.quiet:
            print(f"wrote {summary.output}: {summary.rows} rows from {summary.trains} trains of {args.bridge} "
                  f"({summary.skipped} skipped), {summary.n_ranks} rank(s), {summary.elapsed:.1f} s; "
                  f"{summary.ended_by}")
        for line in summary.losses:
            print(f"  lost: {line}")
    return 0 if summary.signum is None else 128 + summary.signum
