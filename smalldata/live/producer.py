"""The producer on the live karabo-bridge stream: the offline steps, round by round, on every rank.

Rank 0 takes the first train and sends it to every rank: the detectors, functions, pulses,
rejection, cubes and sums are set up on it exactly as offline on a run (through
:class:`~smalldata.live.access.LiveAccess`). Then, round after round, every rank receives a
few trains from its own client (REQ clients of a REP server share the trains without
duplicates), the ranks agree which trains are used (:class:`~smalldata.live.ledger.StreamLedger`),
each processes its own, and rank 0 gathers the rows, puts them in train order and appends them
to the growing file. The run ends when the stream stops (no train within the timeout),
after ``max_trains`` trains, or on SIGINT/SIGTERM; then the output is written as offline.
"""
from __future__ import annotations

import datetime
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from smalldata.config.producer import ProducerConfig
from smalldata.detectors.dssc import DSSC
from smalldata.errors import ConfigError, SmallDataError
from smalldata.live.access import LiveAccess
from smalldata.live.batch import frames_of, light_copy, merge_rows, process_trains
from smalldata.live.finish import finish_output
from smalldata.live.ledger import StreamLedger
from smalldata.live.livefile import GrowingFile, growing_path
from smalldata.live.source import BridgeSource

log = logging.getLogger(__name__)

#: Seconds a receive waits before it looks at the stop flag again.
POLL_S = 0.5


@dataclass
class LiveSummary:
    """What a live run did."""

    output: Path
    rows: int
    trains: int
    skipped: int
    elapsed: float
    n_ranks: int
    ended_by: str
    losses: List[str] = field(default_factory=list)
    #: the signal that ended the run (None: the stream ended or --max-trains was reached)
    signum: Optional[int] = None


class _StopFlag:
    """SIGINT/SIGTERM only set a flag while the live run is in progress (main thread only)."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

    def __enter__(self):
        try:
            self._previous = {s: signal.signal(s, self._set) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals stay as they are
            self._previous = {}
        return self

    def _set(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _failure(exc: BaseException, rank: int) -> str:
    """One line for an error of ``rank``: a user error as it is, anything else with its type."""
    if isinstance(exc, SmallDataError):
        return str(exc)
    log.debug("rank %d failed", rank, exc_info=True)
    return f"rank {rank}: {type(exc).__name__}: {exc}"


def _agree(step, comm):
    """Run ``step()`` on every rank; if it failed anywhere, raise the first failure on every rank.

    A rank's own user error is raised as it is; any other failure becomes a
    :class:`SmallDataError` naming the rank, so that no rank waits for a failed one.
    """
    result, error = None, None
    try:
        result = step()
    except Exception as exc:  # noqa: BLE001 - every failure is agreed on below
        error = exc
    failures = comm.allgather(None if error is None else _failure(error, comm.Get_rank()))
    first = next((f for f in failures if f is not None), None)
    if first is not None:
        if isinstance(error, SmallDataError):
            raise error
        raise SmallDataError(first)
    return result


def _receive(source: BridgeSource, count: int, stop: _StopFlag, timeout: float):
    """Up to ``count`` trains; ``ended`` when none came within ``timeout`` seconds."""
    trains = []
    while len(trains) < count and stop.signum is None:
        waited = 0.0
        train = None
        while train is None and waited < timeout and stop.signum is None:
            train = source.next()
            waited += source.timeout
        if train is None:
            return trains, stop.signum is None
        trains.append(train)
    return trains, False


def configured_sources(config: ProducerConfig, modules) -> List[str]:
    """Sources every train should carry: point data, bunch pattern, digitizer, the detector modules."""
    sources = {spec["source"] for spec in config.point_data.values()}
    for section in ("pulses", "digitizer"):
        if config.settings[section]:
            sources.add(config.settings[section]["source"])
    return sorted(sources) + [DSSC.source(m) for m in modules]


def run_live(config: ProducerConfig, endpoint: str, output: Path, sock: str = "REQ", overwrite: bool = False,
             max_trains: Optional[int] = None, timeout: float = 10.0, first_timeout: float = 30.0,
             layout: str = "auto", run: Optional[int] = None, proposal: Optional[int] = None,
             command: str = "", publish: Optional[str] = None, batch_size: Optional[int] = None,
             comm=None) -> LiveSummary:
    """Produce the small-data file of the trains of a karabo-bridge stream.

    Parameters
    ----------
    config : ProducerConfig
    endpoint : str
        ``tcp://HOST:PORT`` of the bridge.
    output : Path
        The output file (rows grow in :func:`~smalldata.live.livefile.growing_path` meanwhile).
    sock : str
        ``REQ``, ``SUB`` or ``PULL``.
    overwrite : bool
        Replace an existing output.
    max_trains : int, optional
        Stop after this many trains.
    timeout : float
        Seconds without a train that end the run.
    first_timeout : float
        Seconds to wait for the first train.
    layout : str
        ``auto``, ``modules``, ``stacked`` or ``online``.
    run, proposal : int, optional
        Recorded in /meta (proposal default: the config's).
    command : str
        Command line, recorded in /meta.
    publish : str, optional
        Re-publish every train's rows as a karabo-bridge PUB server bound here (rank 0;
        :mod:`smalldata.live.publish`).
    batch_size : int, optional
        Frames per rank and round (whole trains, at least one); default from the config.
    comm : MPI communicator, optional
        Default ``MPI.COMM_WORLD``.
    """
    from mpi4py import MPI

    from smalldata.output.writer import check_output_path

    if config.per_train_detectors:  # the live access reads the DSSC's modules only
        raise ConfigError(f"detectors.{config.per_train_detectors[0]}", "a per-train camera cannot be read from the "
                          "live stream yet; produce its output from the run's files after the run, or remove the "
                          "camera from this config")
    comm = comm or MPI.COMM_WORLD
    rank, n_ranks = comm.Get_rank(), comm.Get_size()
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    proposal = proposal or config.proposal
    output = Path(output)
    if sock == "SUB" and n_ranks > 1:
        raise SmallDataError(f"--sock SUB on {n_ranks} ranks: every subscriber gets every train; run one rank, "
                             "or use REQ (REP server) or PULL (PUSH server) to share the trains between ranks")
    if rank == 0:
        _agree(lambda: check_output_path(output, overwrite), comm)
    else:
        _agree(lambda: None, comm)
    source = _agree(lambda: BridgeSource(endpoint, sock=sock, timeout=min(POLL_S, timeout), layout=layout), comm)
    publisher = None
    try:
        if publish is not None:
            from smalldata.live.publish import Publisher

            publisher = _agree(lambda: Publisher(publish) if rank == 0 else None, comm)
        with _StopFlag() as stop:
            return _run(config, source, output, max_trains, timeout, first_timeout, run, proposal, command,
                        comm, stop, started, t0, overwrite, publisher, batch_size)
    finally:
        source.close()
        if publisher is not None:
            log.info("published %d trains on %s", publisher.sent, publish)
            publisher.close()


def _setup(config, proposal, setup_train, endpoint, comm):
    """Detectors, functions, frame stage and point reader set up on the first train, in agreed steps.

    As offline, the node's ranks read each dark constants file once into shared memory
    (:mod:`smalldata.pipeline.nodeshare`), a collective step of its own.
    """
    from smalldata.io.pointdata import PointReader
    from smalldata.pipeline.checks import check_config_against_run, check_setups
    from smalldata.pipeline.detectors import dark_requests, setup_detectors
    from smalldata.pipeline.nodeshare import load_shared_darks
    from smalldata.pulses.framestage import FrameStage

    def prepare():
        access = LiveAccess(endpoint, [setup_train])
        run_ids = access.train_ids.copy()
        check_config_against_run(config, access, run_ids)
        stage = FrameStage(config.settings["pulses"], config.settings["digitizer"], config.settings["pattern"],
                           config.settings["rejection"], access, run_ids)
        return access, run_ids, stage, dark_requests(config, proposal, access)

    access, run_ids, stage, requests = _agree(prepare, comm)
    darks = _agree(lambda: load_shared_darks(requests, comm), comm)

    def detectors():
        setups = setup_detectors(config, proposal, access, stage.pattern, run_ids, darks)
        check_setups(config, setups, access, run_ids, proposal)
        return setups, PointReader(config.point_data, access)

    setups, points = _agree(detectors, comm)
    access.forget(run_ids)
    return access, stage, setups, points


def _run(config, source, output, max_trains, timeout, first_timeout, run, proposal, command, comm, stop,
         started, t0, overwrite, publisher, batch_size) -> LiveSummary:
    rank, n_ranks = comm.Get_rank(), comm.Get_size()

    def first():
        log.info("waiting up to %g s for the first train from %s", first_timeout, source.endpoint)
        trains, ended = _receive(source, 1, stop, first_timeout)
        if ended:
            source.no_train(first_timeout)
        return trains[0] if trains else None

    setup_train = _agree(first if rank == 0 else (lambda: None), comm)
    setup_train, first_signum = comm.bcast((setup_train, stop.signum), root=0)
    if setup_train is None:
        error = SmallDataError(f"stopped by {signal.Signals(first_signum).name} before the first train; "
                               "no output written")
        error.exit_status = 128 + first_signum  # the shell's convention, as the command reports it
        raise error
    access, stage, setups, points = _setup(config, proposal, setup_train, source.endpoint, comm)
    source.remember(setup_train)
    modules_all = tuple(sorted({m for s in setups for m in s.modules}))
    expected = configured_sources(config, modules_all)
    frames = max(int(frames_of([setup_train], modules_all)[0]), 1)
    batch = batch_size or config.settings["batch_size"] or max(1, int(config.settings["batch_megabytes"] * 2**20 //
                                                        (len(modules_all) * DSSC.frame_bytes // DSSC.n_modules)))
    per_round = max(1, batch // frames)
    # the set-up train is part of the data: rank 0's first round
    ledger = StreamLedger(max_trains)
    growing = GrowingFile(growing_path(output)) if rank == 0 else None
    skipped: list = []
    units: dict = {}
    ended_by, round_no, loop_signum = "stream ended (timeout)", 0, None
    loop_start = time.monotonic()
    last_rows = loop_start  # when the last round with trains was done (the timeout tail is not the loop's)
    try:
        while True:
            remaining = None if max_trains is None else -(-(max_trains - ledger.used) // n_ranks)
            count = per_round if remaining is None else max(0, min(per_round, remaining))
            received_failure = None
            if rank == 0 and round_no == 0:
                mine, ended = [setup_train], False
            else:
                try:
                    mine, ended = _receive(source, count, stop, timeout)
                except Exception as exc:  # noqa: BLE001 - e.g. a message of another layout: agreed on below
                    mine, ended, received_failure = [], True, _failure(exc, rank)
            round_no += 1
            summary = [(t.train_id, [s for s in expected if not _carries(t, s)], light_copy(t)) for t in mine]
            rounds = comm.allgather((summary, ended, stop.signum, received_failure))
            received_failure = next((r[3] for r in rounds if r[3] is not None), None)
            if received_failure is not None:
                raise SmallDataError(f"{received_failure}; no output written")
            decisions = ledger.decide([[(tid, miss, t.ids_from_previous) for tid, miss, t in r[0]] for r in rounds])
            used = sorted([t for r, d in zip(rounds, decisions) for (_, _, t), ok in zip(r[0], d) if ok],
                          key=lambda t: t.train_id)
            own = {t.train_id: t for t, ok in zip(mine, decisions[rank]) if ok}
            access.add([own.get(t.train_id, t) for t in used])
            stage.run_train_ids = access.train_ids
            have = dict(zip((t.train_id for t in used), frames_of(used, modules_all) > 0))
            skipped += [(tid, "no detector frames in any module") for tid, h in have.items() if not h]
            work = np.array(sorted(tid for tid in own if have[tid]), dtype=np.uint64)
            rows, failure = None, None
            try:
                if len(work):
                    rows, batch_units = process_trains(access, stage, setups, points, work)
                    units.update(batch_units)
            except Exception as exc:  # noqa: BLE001 - agreed on with the other ranks below
                failure = _failure(exc, rank)
            access.forget([t.train_id for t in used])
            gathered = comm.gather((rows, units, failure), root=0)
            if rank == 0:
                failure = next((f for _, _, f in gathered if f is not None), None)
                try:
                    if failure is None:
                        for _, u, _ in gathered:
                            units.update(u)
                        merged = merge_rows([g for g, _, _ in gathered])
                        if merged is not None:
                            growing.append(merged, units)
                            if publisher is not None:
                                publisher.publish(merged)
                except Exception as exc:  # noqa: BLE001 - a failed write stops every rank below
                    failure = _failure(exc, rank)
            failure = comm.bcast(failure, root=0)
            if failure is not None:
                raise SmallDataError(f"{failure}; no output written")
            if used:
                last_rows = time.monotonic()
            signums = [r[2] for r in rounds if r[2] is not None]
            if signums:
                loop_signum, ended_by = signums[0], f"stopped by {signal.Signals(signums[0]).name}"
                break
            if ledger.full:
                ended_by = f"--max-trains {max_trains} reached"
                break
            if any(r[1] for r in rounds):
                break
        if rank == 0:
            growing.close()
        for s in setups:
            if s.accumulators is not None:
                s.accumulators.reduce(comm)

        def finish():
            if rank != 0:
                return None
            return finish_output(output, overwrite, growing.path, n_ranks, config, stage, setups, points, skipped,
                                 access, ledger, proposal, run, command, started, t0, ended_by,
                                 last_rows - loop_start)

        rows_losses = comm.bcast(_agree(finish, comm), root=0)
    finally:
        if rank == 0 and growing is not None:
            if growing.file:
                growing.close()
            growing.path.unlink(missing_ok=True)
    n_rows, losses = rows_losses
    return LiveSummary(output=output, rows=n_rows, trains=ledger.used, skipped=len(skipped),
                       elapsed=time.monotonic() - t0, n_ranks=n_ranks, ended_by=ended_by, losses=losses,
                       signum=loop_signum)


def _carries(train, source: str) -> bool:
    """Whether ``train`` has ``source``: for a DSSC module, frames of it."""
    modules = [m for m in train.modules if DSSC.source(m) == source]
    return bool(modules) or (source in train.sources and "DSSC1M" not in source)
