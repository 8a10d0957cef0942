"""smd_submit: process a range of runs on SLURM, one array task per run; show where each run stands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ._cli import add_common_arguments, add_run_arguments, run_main


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``smd_submit``."""
    parser = argparse.ArgumentParser(
        prog="smd_submit",
        description="Submit a range of runs to SLURM: one array task per run, each running smd_producer under "
                    "MPI (after smd_dark for a dark the config names and that is not characterised yet). Runs "
                    "whose output is complete and was made from the same config and dark (the fingerprint "
                    "recorded in the output) are skipped, failed and outdated ones processed again, queued and "
                    "running ones left alone. Then prints the state of each run: new, queued, running, done, "
                    "outdated, partial, or failed with the last error line of its log.",
        epilog="example: smd_submit -p 2937 -r 610-615,620 -c producer.yaml --ranks 16 --reservation upex_002937 "
               "--max-concurrent 4 --wait")
    add_run_arguments(parser, run_help="run range, e.g. 610-615,620", run_range=True, config_required=True)
    parser.add_argument("--ranks", type=int, default=1, metavar="N", help="MPI ranks per run (default 1)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--partition", metavar="P", help="SLURM partition, e.g. upex")
    where.add_argument("--reservation", metavar="R", help="SLURM reservation, e.g. upex_002937")
    parser.add_argument("--max-concurrent", type=int, metavar="K", help="at most K runs processed at once")
    parser.add_argument("--time", dest="time_limit", metavar="T", help="SLURM time limit per run, e.g. 2:00:00")
    parser.add_argument("--wait-data", type=float, default=3600.0, metavar="SECONDS",
                        help="each job waits at most SECONDS for its run's files to be complete (default 3600)")
    parser.add_argument("--force", action="store_true", help="process every run again, done or not")
    parser.add_argument("--status", action="store_true", help="only show the state of each run; submit nothing")
    parser.add_argument("--wait", action="store_true",
                        help="wait until the submitted jobs have ended, then show the states (exit status 1 "
                             "if a run failed)")
    add_common_arguments(parser)
    return parser


def format_states(states) -> List[str]:
    """The state table: one line per run."""
    lines = [f"{'run':>5}  {'state':<9} {'job':<12} {'fingerprint':<16}  detail"]
    for st in states:
        lines.append(f"{st.run:>5}  {st.state:<9} {st.job or '-':<12} {st.fingerprint or '-':<16}  {st.detail}")
    return lines


def _body(args: argparse.Namespace) -> int:
    from smalldata.beamtime import slurm
    from smalldata.beamtime.fingerprint import config_fingerprint
    from smalldata.beamtime.jobstate import run_states
    from smalldata.beamtime.runrange import parse_run_range
    from smalldata.beamtime.submit import SubmitOptions, plan_submission, submit, wait_for_jobs
    from smalldata.config.producer import ProducerConfig
    from smalldata.errors import SmallDataError

    runs = parse_run_range(args.runs)
    for name, value in (("--ranks", args.ranks), ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise SmallDataError(f"{name} must be >= 1, got {value}")
    if not args.wait_data > 0:
        raise SmallDataError(f"--wait-data must be a positive number of seconds, got {args.wait_data:g}")
    config = ProducerConfig.from_file(args.config)
    proposal = args.proposal or config.proposal
    output_dir = Path(config.settings["output_dir"])
    if args.status:
        slurm.check_slurm()
        states = run_states(runs, output_dir, config_fingerprint(config, proposal), slurm.queue_states())
    else:
        options = SubmitOptions(ranks=args.ranks, partition=args.partition, reservation=args.reservation,
                                max_concurrent=args.max_concurrent, time_limit=args.time_limit,
                                wait_data=args.wait_data, force=args.force)
        plan = plan_submission(config, proposal, runs, options)
        job = submit(config, plan, options)
        if not args.quiet:
            for run, why in sorted(plan.skipped.items()):
                print(f"run {run}: skipped, {why}")
            if job is not None:
                darks = f" after dark run(s) {sorted(set(plan.darks.values()))}" if plan.darks else ""
                print(f"submitted {len(plan.process)} run(s) as array job {job}{darks}")
        if job is not None and args.wait:
            wait_for_jobs([job])
        states = run_states(runs, output_dir, config_fingerprint(config, proposal), slurm.queue_states())
    if not args.quiet:
        print("\n".join(format_states(states)))
    return 1 if (args.wait or args.status) and any(st.state == "failed" for st in states) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``smd_submit``."""
    return run_main(_body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
