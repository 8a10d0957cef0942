"""The MPI event loop: contiguous train blocks per rank, batches of whole trains.

:func:`run_producer` is what ``smd_producer`` runs. Every rank opens the run, sets up
the detectors and functions, processes its block of trains batch by batch and appends
the results to its part file; rank 0 merges the parts in train order and publishes the
output atomically. Results do not depend on the number of ranks or the batch size.
"""
from __future__ import annotations

import datetime
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from smalldata import __version__
from smalldata.calib.darkref import hash_in_background
from smalldata.config.producer import ProducerConfig
from smalldata.detectors.types import DetectorType
from smalldata.errors import SmallDataError
from smalldata.io.pointdata import PointReader
from smalldata.io.runaccess import RunAccess
from smalldata.output.writer import (
    OutputFile,
    PartWriter,
    merge_parts,
    prepare_publication,
    remove_parts_dir,
)
from smalldata.output.files import SPACE_MARGIN, DiskFullError, check_free_space, is_disk_full
from smalldata.pipeline.batch import process_batch
from smalldata.pipeline.checks import check_config_against_run, check_setups
from smalldata.pipeline.detectors import DetectorSetup, dark_requests, setup_detectors
from smalldata.parallel import activity, timelimit
from smalldata.parallel.mpi import agree, failure_of, get_comm, raise_agreed, frame_batches, split_blocks
from smalldata.parallel.progress import Coordinator, StoppedByOtherRank
from smalldata.parallel.shutdown import Interrupted, interruptible, received, signals_set_flag
from smalldata.pipeline.interrupts import describe, in_user_function
from smalldata.pipeline.nodeshare import load_shared_darks
from smalldata.pipeline.rungroups import write_run_groups
from smalldata.pipeline.trainrows import (
    TrainRows,
    attach_train_vetoes,
    camera_train_ids,
    setup_cameras,
    write_camera_cubes,
)
from smalldata.pulses.framestage import FrameStage
from smalldata.timing.hook import point_reader

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a producer run did."""

    output: Path
    rows: int
    trains: int
    skipped: int
    datasets: int
    elapsed: float
    n_ranks: int
    losses: List[str] = field(default_factory=list)
    frames_per_second: float = field(init=False)

    def __post_init__(self):
        self.frames_per_second = self.rows / self.elapsed if self.elapsed > 0 else 0.0


def auto_batch_size(megabytes: float, n_modules: int, detector_type: DetectorType) -> int:
    """Frames per batch such that the raw data of ``n_modules`` modules take about ``megabytes`` MiB."""
    frame_bytes = detector_type.frame_bytes * n_modules // detector_type.n_modules
    return max(1, int(megabytes * 2**20 // max(frame_bytes, 1)))


def default_output(config: ProducerConfig, run: int) -> Path:
    """``<output_dir>/r<run>.h5``."""
    return Path(config.settings["output_dir"]) / f"r{run:04d}.h5"


def run_producer(config: ProducerConfig, run: int, proposal: Optional[int] = None,
                 output: Optional[Path] = None, overwrite: bool = False, max_trains: Optional[int] = None,
                 batch_size: Optional[int] = None, command: str = "", comm=None) -> Summary:
    """Produce the small-data file of ``run``.

    Parameters
    ----------
    config : ProducerConfig
        Validated config.
    run : int
        Run number.
    proposal : int, optional
        Overrides the config's proposal.
    output : Path, optional
        Output file; default ``<output_dir>/r<run>.h5``.
    overwrite : bool
        Replace an existing output.
    max_trains : int, optional
        Only the first ``max_trains`` trains (a quick look).
    batch_size : int, optional
        Frames per batch; overrides the config.
    command : str
        Command line, recorded in /meta.
    comm : MPI communicator, optional
        Default ``MPI.COMM_WORLD``.
    """
    comm = get_comm(comm)
    coordinator = Coordinator(comm, interval=config.settings["progress_interval"])
    timelimit.set_limit(config.settings["function_time_limit"])
    with signals_set_flag():
        try:
            return _run(config, run, proposal, output, overwrite, max_trains, batch_size, command, comm, coordinator)
        finally:
            timelimit.set_limit(None)
            coordinator.drain()


def _run(config, run, proposal, output, overwrite, max_trains, batch_size, command, comm,
         coordinator: Coordinator) -> Summary:
    rank, n_ranks = comm.Get_rank(), comm.Get_size()
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    proposal = proposal or config.proposal
    batch_size = batch_size or config.settings["batch_size"]
    output = Path(output) if output is not None else default_output(config, run)

    def prepare():
        activity.note("opening the run")
        # the checks build the functions: a user's __init__ runs here
        with interruptible(lambda tb: describe(tb, phase="while opening the run"), in_user_function):
            access = RunAccess.open(proposal, run, config.settings["data_root"])
            run_ids = access.train_ids if max_trains is None else access.train_ids[:max_trains]
            check_config_against_run(config, access, run_ids)
            stage = None  # without a per-pulse detector, a run's rows are its trains
            if config.per_pulse_detectors:
                stage = FrameStage(config.settings["pulses"], config.settings["digitizer"],
                                   config.settings["pattern"], config.settings["rejection"], access, run_ids)
            return access, run_ids, stage, dark_requests(config, proposal, access)

    def prepare_detectors(access, run_ids, stage, darks):
        activity.note("setting up the detectors and functions")
        with interruptible(lambda tb: describe(tb, phase="while setting up the detectors"), in_user_function):
            setups = setup_detectors(config, proposal, access, stage.pattern if stage else None, run_ids, darks)
            cameras = setup_cameras(config, proposal, access, run_ids)
        check_setups(config, setups + [c.setup for c in cameras], access, run_ids, proposal)
        if rank == 0:  # the output records each dark's checksum: read for it while the frames are processed
            for s in setups:
                if s.det.dark_file:
                    hash_in_background(s.det.dark_file)
        return setups, cameras, point_reader(config, access, run_ids)

    def prepare_output():
        if rank == 0:
            return prepare_publication(output, overwrite)
        return None

    parts_dir = comm.bcast(agree(prepare_output, comm, coordinator), root=0)
    activity.add_temporaries(parts_dir)
    try:
        access, train_ids, stage, requests = agree(prepare, comm, coordinator)
        # every rank is here: the node's ranks read the dark constants once, into shared memory
        activity.note("reading the dark constants")
        darks = agree(lambda: load_shared_darks(requests, comm), comm, coordinator)
        setups, cameras, points = agree(lambda: prepare_detectors(access, train_ids, stage, darks), comm, coordinator)
        del darks
        camera_ids = camera_train_ids(cameras, train_ids)
        train_rows = TrainRows(cameras, points, events=not setups, batch_megabytes=config.settings["batch_megabytes"])
        attach_train_vetoes(config, setups, train_rows)
        if setups:
            modules_all = sorted({m for s in setups for m in s.modules})
            if batch_size is None:
                batch_size = auto_batch_size(config.settings["batch_megabytes"], len(modules_all), setups[0].det.type)
            frames = access.frames_per_train(modules_all)[: len(train_ids)]
            damage = _damage_by_train(access)
            skipped = [(int(t), "no detector frames in any module" + damage.get(int(t), ""))
                       for t in train_ids[frames == 0]]
            keep = frames > 0
            work_ids, work_frames = train_ids[keep], frames[keep]
            blocks = split_blocks(work_frames, n_ranks)
            start, stop = blocks[rank]
            # the cameras' trains follow the frames' blocks: rank r takes those from its first train up to
            # the next rank's first train (the last rank: to the end; a rank without frames: none)
            bounds = [0] + [int(work_ids[b0]) if b0 < len(work_ids) else np.iinfo(np.uint64).max
                            for b0, _ in blocks[1:]] + [np.iinfo(np.uint64).max]
            my_camera_ids = camera_ids[(camera_ids >= np.uint64(bounds[rank]))
                                       & (camera_ids < np.uint64(bounds[rank + 1]))]
        else:  # only per-train detectors: one row per train with an image
            skipped = [(int(t), "no image of any camera") for t in train_ids[~np.isin(train_ids, camera_ids)]]
            work_ids, work_frames = camera_ids, np.ones(len(camera_ids), np.int64)
            start, stop = split_blocks(work_frames, n_ranks)[rank]
            my_camera_ids = camera_ids[start:stop]
        coordinator.set_work(len(work_ids), int(work_frames.sum()))
        part_path = Path(parts_dir) / f"part_{rank:05d}.h5"
        failure = None
        try:
            frame_block = slice(start, stop) if setups else slice(0, 0)  # camera-only: no frames' batches
            _process_block(access, stage, setups, points, work_ids[frame_block], work_frames[frame_block],
                           batch_size, part_path, coordinator, train_rows, my_camera_ids)
        except BaseException as exc:  # noqa: BLE001 - every failure (SystemExit too) is agreed on below
            failure = failure_of(exc)
            if isinstance(exc, Interrupted):  # the others stop at their next poll
                coordinator.abort(str(exc), exc.signum)
            elif not isinstance(exc, StoppedByOtherRank):
                log.debug("rank %d failed", rank, exc_info=True)
                coordinator.abort(failure[0])
        activity.note("waiting for the other ranks to end their trains")
        coordinator.wait_for_all()
        if failure is None and received() is not None:
            failure = failure_of(Interrupted(received()))
        statuses = comm.allgather((failure, coordinator.sent, access.faults.entries()))
        coordinator.finish([s for _, s, _ in statuses])
        raise_agreed([f for f, _, _ in statuses], comm)
        for _, _, entries in statuses:
            access.faults.extend(entries)
        activity.note("adding up the run sums of all ranks")
        for s in setups + [c.setup for c in cameras]:
            if s.accumulators is not None:
                s.accumulators.reduce(comm)

        def finalize():
            if rank != 0:
                return None
            no_image = {c.name: train_ids[~np.isin(train_ids, c.trains.train_ids)] for c in cameras}
            return _write_output(output, overwrite, parts_dir, n_ranks, config, stage, setups, cameras, points,
                                 skipped, access, proposal, run, train_ids, command, started, t0, coordinator,
                                 no_image)

        activity.note("waiting for rank 0 to merge the part files" if rank else "merging the part files")
        rows_datasets = comm.bcast(agree(finalize, comm, coordinator, check_signals=False), root=0)
    finally:
        coordinator.wait_for_all()
        if rank == 0:
            remove_parts_dir(Path(parts_dir))
    if received() is not None and rank == 0:
        log.warning("a stop signal arrived after the output was complete; %s is published", output)
    rows, n_datasets, losses = rows_datasets
    return Summary(output=output, rows=rows, trains=len(train_ids), skipped=len(skipped), datasets=n_datasets,
                   elapsed=time.monotonic() - t0, n_ranks=n_ranks, losses=losses)


def _process_block(access: RunAccess, stage: Optional[FrameStage], setups: Sequence[DetectorSetup],
                   points: PointReader, train_ids: np.ndarray, frames_per_train: np.ndarray, batch_size: int,
                   part_path: Path, coordinator: Coordinator, train_rows: TrainRows, camera_ids: np.ndarray) -> None:
    """Process this rank's trains batch by batch into its part file (``camera_ids``: its cameras' trains)."""
    modules_all = tuple(sorted({m for s in setups for m in s.modules}))
    writer = PartWriter(part_path)
    current = [None]  # the train of the batch being processed, for a signal's message
    cameras = _CameraProgress(train_rows, camera_ids, writer, coordinator, current, counts_as_work=not setups)
    try:
        with interruptible(lambda tb: describe(tb, current[0], "while processing"), in_user_function):
            _process_batches(access, stage, setups, points, train_ids, frames_per_train, batch_size, writer,
                             coordinator, modules_all, current, cameras)
            cameras.up_to(None)
        writer.close()
    except BaseException as exc:
        try:
            writer.close()
        except Exception as close_exc:  # noqa: BLE001 - the first failure is the one reported
            log.debug("closing %s after a failure: %s", part_path, close_exc)
        if is_disk_full(exc):  # the parts and the output need about twice the output's size
            raise DiskFullError(part_path.parent.parent, 2 * max(writer.bytes_per_row, 1.0) *
                                coordinator.total_frames + SPACE_MARGIN) from None
        raise


def _process_batches(access: RunAccess, stage: FrameStage, setups: Sequence[DetectorSetup], points: PointReader,
                     train_ids: np.ndarray, frames_per_train: np.ndarray, batch_size: int, writer: PartWriter,
                     coordinator: Coordinator, modules_all: tuple, current: list,
                     cameras: "_CameraProgress") -> None:
    """The batches of :func:`_process_block`; ``current[0]`` is the first train of the batch in hand.

    The cameras' trains up to a batch's last train are processed before it.
    """
    trains_done = frames_done = 0
    # intra-train dark subtraction needs each train's dark frames in the batch: no pieces of trains
    whole_trains = any(s.dark_subtraction is not None for s in setups)
    batches = frame_batches(frames_per_train, batch_size, whole_trains) if len(train_ids) else []
    for i, (b0, b1, window) in enumerate(batches):
        coordinator.poll()
        tids = train_ids[b0:b1]
        cameras.up_to(int(tids[-1]))
        current[0] = int(tids[0])
        activity.note("reading and calibrating", current[0])
        raw = access.read_raw(modules_all, tids, window)
        if i + 1 < len(batches) and batches[i + 1][0] >= b1:  # the disk reads the next trains meanwhile
            access.prefetch(modules_all, train_ids[batches[i + 1][0]:batches[i + 1][1]])
        outputs, units = process_batch(raw, stage, setups, points)
        writer.append(outputs, units)
        if window is None or window[1] >= frames_per_train[b0]:  # a train counts once its last piece is done
            trains_done += len(tids)
        frames_done += len(raw)
        access.release(raw)  # its frames' memory serves the next batch
        coordinator.batch_done(trains_done, frames_done)


class _CameraProgress:
    """This rank's camera trains, processed in train order as the frames' batches advance."""

    def __init__(self, train_rows: TrainRows, camera_ids: np.ndarray, writer: PartWriter, coordinator: Coordinator,
                 current: list, counts_as_work: bool):
        self.rows, self.ids, self.writer, self.coordinator = train_rows, camera_ids, writer, coordinator
        self.current, self.counts_as_work = current, counts_as_work
        self.done = 0

    def up_to(self, last_train: Optional[int]) -> None:
        """Process the cameras' trains up to ``last_train`` (None: all that are left)."""
        stop = len(self.ids) if last_train is None else int(np.searchsorted(self.ids, np.uint64(last_train), "right"))
        step = self.rows.batch_trains
        for b0 in range(self.done, stop, step):
            self.coordinator.poll()
            ids = self.ids[b0:min(b0 + step, stop)]
            self.current[0] = int(ids[0])
            activity.note("reading and processing camera images", self.current[0])
            self.rows.process(ids, self.writer.append)
            self.done = b0 + len(ids)
            if self.counts_as_work:
                self.coordinator.batch_done(self.done, self.done)
        self.done = max(self.done, stop)


def _write_output(output, overwrite, parts_dir, n_ranks, config, stage, setups, cameras, points, skipped, access,
                  proposal, run, train_ids, command, started, t0, coordinator,
                  no_image) -> Tuple[int, int, List[str]]:
    setups = list(setups) + [c.setup for c in cameras]
    parts = [Path(parts_dir) / f"part_{r:05d}.h5" for r in range(n_ranks)]
    with interruptible(lambda tb: describe(tb, phase="while describing the functions"), in_user_function):
        descriptions = [s.describe() for s in setups]  # the functions' parameters and arrays: user code
    needed = sum(p.stat().st_size for p in parts if p.exists()) + _array_bytes(descriptions) + (1 << 20)
    check_free_space(output.parent, needed)
    out = OutputFile(output, overwrite)
    activity.add_temporaries(out.tmp_path)  # removed by the supervisor should this rank die hard
    try:
        rows = merge_parts(parts, out.file, poll=coordinator.poll, own_rows=[c.name for c in cameras])
        if "trainId" not in out.file:
            raise SmallDataError(f"no frames were processed for run {run}; check --max-trains and the modules")
        meta_attrs = {
            "config": config.text, "config_path": str(config.path), "version": __version__,
            "command": command, "n_ranks": n_ranks, "proposal": proposal, "run": run,
            "run_path": str(access.path), "start": started.isoformat(),
            "end": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "elapsed_s": time.monotonic() - t0, "host": socket.gethostname(),
        }
        losses = write_run_groups(out.file, config, stage, setups, points, descriptions, skipped, access,
                                  train_ids, meta_attrs, poll=coordinator.poll, no_image=no_image)
        write_camera_cubes(out.file, cameras, config, points)
        losses.check_usable()
        n_datasets = sum(1 for _ in _walk(out.file))
        out.publish(poll=coordinator.poll)
    except BaseException as exc:
        out.discard()
        if is_disk_full(exc):
            raise DiskFullError(output.parent, needed) from None
        raise
    losses.warn()
    return rows, n_datasets, losses.lines()


def _damage_by_train(access: RunAccess) -> Dict[int, str]:
    """Train id -> `` (where: reason; ...)`` of the damage found so far (when the run was opened)."""
    found: Dict[int, List[str]] = {}
    for train_id, where, reason in access.faults.entries():
        found.setdefault(int(train_id), []).append(f"{where}: {reason}")
    return {t: f" ({'; '.join(r)})" for t, r in found.items()}


def _array_bytes(value) -> int:
    """Bytes of the arrays in nested mappings and lists (``(array, unit)`` pairs included)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return sum(_array_bytes(v) for v in value)
    return 0


def _walk(group):
    for item in group.values():
        if isinstance(item, h5py.Group):
            yield from _walk(item)
        else:
            yield item
