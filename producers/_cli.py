"""Shared command-line plumbing: the run arguments, logging set-up and one-line errors."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from smalldata.errors import SmallDataError

log = logging.getLogger("smalldata")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` and ``--quiet`` to a parser."""
    parser.add_argument("--debug", action="store_true",
                        help="show debug logging and full tracebacks on errors")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")


def add_run_arguments(parser: argparse.ArgumentParser, run_help: str = "run number",
                      proposal_required: bool = False, config_help: Optional[str] = "producer YAML config",
                      config_required: bool = False, config_default: Optional[Path] = None,
                      run_required: bool = True, run_range: bool = False) -> None:
    """Add the arguments that name a run: ``-r/--run``, ``-p/--proposal`` and ``-c/--config``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    run_help : str
        What the run is, for ``--help``.
    proposal_required : bool
        Whether ``-p`` must be given; else it defaults to the config's proposal.
    config_help : str or None
        What the config gives, for ``--help``; None: the command takes no ``-c``.
    config_required, config_default
        Whether ``-c`` must be given, else its default path (None: no config).
    run_required : bool
        Whether ``-r`` must be given.
    run_range : bool
        ``-r/--runs`` takes a range of runs as text (``610-615,620``) instead of one run number.
    """
    if run_range:
        parser.add_argument("-r", "--runs", required=run_required, help=run_help)
    else:
        parser.add_argument("-r", "--run", type=int, required=run_required, help=run_help)
    parser.add_argument("-p", "--proposal", type=int, required=proposal_required,
                        help="proposal number, e.g. 2937" if proposal_required else
                        "proposal number (default: from the config)")
    if config_help is not None:
        if config_default is not None:
            config_help = f"{config_help} (default: {config_default})"
        parser.add_argument("-c", "--config", type=Path, required=config_required, default=config_default,
                            help=config_help)


def mpi_rank_from_environment() -> int:
    """This process's MPI rank as the launcher tells it (0 when not under mpirun)."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    """Log to stderr as ``LEVEL name: message`` (ranks other than 0 log only warnings)."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    if mpi_rank_from_environment() != 0 and not debug:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_main(body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: Optional[Sequence[str]] = None) -> int:
    """Parse arguments, run ``body(args)`` and turn user errors into one line and exit status 2.

    Unexpected exceptions give exit status 1 with a one-line summary (full traceback with --debug).
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "debug", False), getattr(args, "quiet", False))
    prog = parser.prog
    # under MPI every rank raises the same error; rank 0 reports it
    report = mpi_rank_from_environment() == 0 or args.debug
    try:
        return int(body(args) or 0)
    except SmallDataError as exc:
        if args.debug:
            raise
        if report:
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 2))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last-resort reporting for a CLI
        if args.debug:
            raise
        if report:
            print(f"{prog}: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                  file=sys.stderr)
        return 1
