"""Dark characterisation: pedestal, noise and bad pixels per module, memory cell and pixel.

One streaming pass over the dark run accumulates, per module, memory cell and pixel,
the frame count and the sums of the raw values and of their squares as int64. Each
MPI rank takes a contiguous block of trains; the integer sums are added over ranks,
so the result is exact and the same for any number of ranks. Then

    pedestal = S1 / n,    noise**2 = (n S2 - S1**2) / (n (n - 1))

with the numerator computed exactly in int64. Modules are processed one at a time to
bound memory. The constants are stored in ``<calib_dir>/dark_p<proposal>_r<run>_<det>.h5``
(see ``docs/dark.md``).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from smalldata.calib.badpixels import classify_bad_pixels
from smalldata.calib.cellsums import CellAccumulator
from smalldata.calib.darkfile import (  # noqa: F401
    DARK_FILE_PATTERN,
    DarkConstants,
    DarkFileWriter,
    check_cells_cover,
    dark_file_path,
    find_dark_file,
    read_dark_file,
    utc_now,
    write_dark_file,
)
from smalldata.config.dark import DarkThresholds
from smalldata.detectors.dssc import DSSC
from smalldata.detectors.types import DetectorType
from smalldata.errors import DataError
from smalldata.io.runaccess import RunAccess
from smalldata.parallel import mpi, shutdown

__all__ = ["DarkPlan", "ModuleDark", "characterise_dark", "characterise_dark_to_file",
           "iter_module_darks", "plan_dark",
           # re-exported from smalldata.calib.darkfile
           "DARK_FILE_PATTERN", "DarkConstants", "DarkFileWriter", "check_cells_cover", "dark_file_path",
           "find_dark_file", "read_dark_file", "write_dark_file"]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- reading the run
def _run_label(access: RunAccess, run_number: Optional[int]) -> str:
    if run_number:
        return f"dark run {run_number}"
    return f"dark run {access.path}" if access.path is not None else "dark run"


@dataclass
class ModuleDark:
    """Constants of one module, as :func:`iter_module_darks` yields them.

    Attributes
    ----------
    index, module : int
        Position along axis M and module number.
    pedestal, noise : ndarray, (C, rows, columns) float32 or None
        None on ranks that do not receive the sums.
    status_mask : ndarray, (rows, columns) uint8 or None
    n_frames : ndarray, (C,) int64
        Frames per cell (on every rank).
    """

    index: int
    module: int
    pedestal: Optional[np.ndarray]
    noise: Optional[np.ndarray]
    status_mask: Optional[np.ndarray]
    n_frames: np.ndarray


@dataclass
class DarkPlan:
    """What a dark characterisation reads: the run, its modules and cells, this rank's trains."""

    access: RunAccess
    label: str
    modules: tuple
    cell_ids: np.ndarray
    train_ids: np.ndarray


def plan_dark(run, modules: Optional[Sequence[int]] = None, comm=None, run_number: int = 0,
              detector_type: DetectorType = DSSC) -> DarkPlan:
    """Open the dark run, check the modules and agree on the memory cells over all ranks.

    The cell axis of the constants is the union of the cells of all modules; a cell
    that a module lacks then shows up as too few frames for that module. ``detector_type``:
    the per-pulse detector whose modules are read (a :class:`RunAccess` given as ``run``
    keeps its own).
    """
    comm = mpi.get_comm(comm)
    access = RunAccess.from_run(run, detector_type=detector_type)
    name = access.detector_type.name
    label = _run_label(access, run_number)
    present = access.available_modules()
    modules = tuple(sorted(present)) if modules is None else tuple(sorted({int(m) for m in modules}))
    missing = [m for m in modules if m not in present]
    if not modules or missing:
        raise DataError(f"{label}: no data for {name} module(s) {missing or 'any'} "
                        f"(modules in the run: {list(present)}); choose modules from those")
    all_trains = access.train_ids
    start, stop = mpi.block_range(len(all_trains), comm)
    my_trains = all_trains[start:stop]

    def local_cells():
        found = set()
        for m in modules:
            if len(my_trains):
                found.update(np.unique(access.cell_ids(m, my_trains)).tolist())
        return found

    cells = np.array(sorted(set().union(*comm.allgather(mpi.agree(local_cells, comm)))), dtype=np.uint16)
    if len(cells) == 0:
        raise DataError(f"{label}: no {name} frames in module(s) {list(modules)}")
    return DarkPlan(access, label, modules, cells, my_trains)


def iter_module_darks(plan: DarkPlan, thresholds: DarkThresholds = DarkThresholds(), comm=None,
                      chunk_frames: int = 1024, root: Optional[int] = 0,
                      progress: bool = True) -> Iterator[ModuleDark]:
    """Characterise the modules of ``plan`` one at a time (every rank must iterate to the end).

    ``root`` receives the pixel sums (None: every rank); other ranks get constants of None.
    """
    comm = mpi.get_comm(comm)
    receives = root is None or comm.Get_rank() == root
    t0 = time.monotonic()
    for i, m in enumerate(plan.modules):
        acc = mpi.agree(lambda m=m: _accumulate_module(plan.access, m, plan.train_ids, plan.cell_ids,
                                                       chunk_frames), comm)
        acc.reduce(comm, root=root)
        _check_frames(acc.count, plan.cell_ids, thresholds.min_frames, plan.label, m)
        if not receives:
            yield ModuleDark(i, m, None, None, None, acc.count.copy())
            continue
        ped, sig = acc.mean_std()
        del acc.sum, acc.sumsq
        status = classify_bad_pixels(ped, sig, thresholds)
        if progress:
            log.info("%s: module %d done (%d/%d): %d cells, %d frames, %d bad pixels, %.1f s",
                     plan.label, m, i + 1, len(plan.modules), len(plan.cell_ids), int(acc.count.sum()),
                     int(np.count_nonzero(status)), time.monotonic() - t0)
        yield ModuleDark(i, m, ped, sig, status, acc.count.copy())


def characterise_dark(run, modules: Optional[Sequence[int]] = None,
                      thresholds: DarkThresholds = DarkThresholds(), comm=None,
                      proposal: int = 0, run_number: int = 0, detector: str = "dssc",
                      chunk_frames: int = 1024, all_ranks: bool = False,
                      progress: bool = True, detector_type: DetectorType = DSSC) -> Optional[DarkConstants]:
    """Pedestal, noise and bad pixels of a dark run, in memory.

    Parameters
    ----------
    run : RunAccess, extra_data.DataCollection or path
        The dark run (or its directory; see :meth:`RunAccess.from_run`).
    modules : sequence of int, optional
        Modules to characterise; default all modules in the run.
    thresholds : DarkThresholds
        Frame count and bad-pixel limits.
    comm : MPI communicator, optional
        Default the world; each rank reads a contiguous block of trains.
    proposal, run_number, detector
        Recorded in the constants and used in messages.
    chunk_frames : int
        Frames read at once per module (128 kB each for the DSSC).
    all_ranks : bool
        Return the constants on every rank; by default only rank 0 gets them.
    progress : bool
        Log a line per module (on rank 0).
    detector_type : DetectorType
        The per-pulse detector (sources, module shape): the DSSC by default.

    Returns
    -------
    DarkConstants or None
        None on ranks other than 0 unless ``all_ranks``.

    Raises
    ------
    DataError
        A requested module is missing, or a cell has fewer than ``thresholds.min_frames`` frames.
    """
    comm = mpi.get_comm(comm)
    plan = plan_dark(run, modules, comm, run_number, detector_type)
    root = None if all_ranks else 0
    parts = list(iter_module_darks(plan, thresholds, comm, chunk_frames, root, progress))
    if parts[0].pedestal is None:
        return None
    return DarkConstants(
        pedestal=np.stack([p.pedestal for p in parts]), noise=np.stack([p.noise for p in parts]),
        status_mask=np.stack([p.status_mask for p in parts]), modules=np.array(plan.modules, dtype=np.int64),
        cell_ids=plan.cell_ids, n_frames=np.stack([p.n_frames for p in parts]), proposal=int(proposal),
        run=int(run_number), detector=detector, thresholds=thresholds, created=utc_now())


def characterise_dark_to_file(run, path: os.PathLike, modules: Optional[Sequence[int]] = None,
                              thresholds: DarkThresholds = DarkThresholds(), comm=None,
                              proposal: int = 0, run_number: int = 0, detector: str = "dssc",
                              chunk_frames: int = 1024, overwrite: bool = False,
                              progress: bool = True, detector_type: DetectorType = DSSC) -> DarkConstants:
    """Characterise a dark run and write its constants file, holding one module at a time.

    Same parameters as :func:`characterise_dark`; rank 0 writes ``path`` atomically.

    Returns
    -------
    DarkConstants
        A summary on every rank: ``status_mask``, ``n_frames``, ``modules``, ``cell_ids``
        (``pedestal`` and ``noise`` are empty, read them with :func:`read_dark_file`).
    """
    comm = mpi.get_comm(comm)
    writing = comm.Get_rank() == 0
    plan = plan_dark(run, modules, comm, run_number, detector_type)
    module_shape = tuple(plan.access.detector_type.module_shape)
    created = utc_now()
    opened = []  # the writer as soon as it exists: agreeing on it can raise (a stop signal) after it was made

    def open_writer():
        opened.append(DarkFileWriter(path, plan.modules, plan.cell_ids, proposal, run_number, detector,
                                     thresholds, overwrite, created, module_shape=module_shape))
        return opened[0]

    status, counts = [], []
    try:
        writer = mpi.agree(open_writer if writing else lambda: None, comm)
        for part in iter_module_darks(plan, thresholds, comm, chunk_frames, 0, progress):
            mpi.agree(lambda part=part: (check_dark_quality(part, plan.label),
                                         writer.write_module(part.index, part.pedestal, part.noise,
                                                             part.status_mask, part.n_frames))
                      if writing else None, comm)
            status.append(part.status_mask if writing else None)
            counts.append(part.n_frames)
        mpi.agree(lambda: writer.close() if writing else None, comm)
    finally:
        if opened and opened[0].tmp.exists():
            opened[0].abort()
    status_mask = np.stack(status) if writing else None
    status_mask = comm.bcast(status_mask, root=0)
    empty = np.zeros((len(plan.modules), 0) + module_shape, np.float32)
    return DarkConstants(pedestal=empty, noise=empty, status_mask=status_mask,
                         modules=np.array(plan.modules, dtype=np.int64), cell_ids=plan.cell_ids,
                         n_frames=np.stack(counts), proposal=int(proposal), run=int(run_number), detector=detector,
                         thresholds=thresholds, created=created)


def _accumulate_module(access: RunAccess, module: int, train_ids: np.ndarray, cells: np.ndarray,
                       chunk_frames: int) -> CellAccumulator:
    """Sums of one module over ``train_ids``, read ``chunk_frames`` frames at a time."""
    from extra_data import by_id

    det_type = access.detector_type
    module_shape = tuple(det_type.module_shape)
    acc = CellAccumulator(cells, module_shape)
    if len(train_ids) == 0:
        return acc
    source = det_type.source(module)
    kd_data = access.data[source, det_type.image_key].select_trains(by_id[train_ids])
    kd_cell = access.data[source, "image.cellId"].select_trains(by_id[train_ids])
    kd_tid = access.data[source, "image.trainId"].select_trains(by_id[train_ids])
    tids = np.asarray(kd_data.train_id_coordinates(), dtype=np.uint64)
    trains, counts = np.unique(tids, return_counts=True)
    dropped = 0
    for a, b in mpi.split_batches(counts, chunk_frames):
        chunk, n = trains[a:b], int(counts[a:b].sum())
        shutdown.check()  # a stop signal ends the dark between chunks (the ranks agree on it)
        sel = by_id[chunk]
        try:
            raw = kd_data.select_trains(sel).ndarray()
            cell = kd_cell.select_trains(sel).ndarray()
            stored = kd_tid.select_trains(sel).ndarray().reshape(-1)
            expected = np.asarray(kd_tid.select_trains(sel).train_id_coordinates(), dtype=np.uint64)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {det_type.name} module {module}, trains {int(chunk[0])}..{int(chunk[-1])}: "
                            f"{exc}; the file may be truncated") from None
        if raw.shape[0] != n:
            raise DataError(f"{det_type.name} module {module}: {raw.shape[0]} frames read for trains "
                            f"{int(chunk[0])}..{int(chunk[-1])}, index says {n}")
        good = stored == expected  # frames the INDEX gives to another train than they hold: not used
        if not good.all():
            dropped += int(np.count_nonzero(~good))
            raw, cell, n = raw[good], cell.reshape(-1)[good], int(np.count_nonzero(good))
        acc.add(raw.reshape((n,) + module_shape), cell.reshape(-1))
    if dropped:
        log.warning("%s module %d: %d dark frame(s) not used: their image.trainId differs from the INDEX",
                    det_type.name, module, dropped)
    return acc


#: Above this fraction of bad pixels in a module, a dark run is suspect (beam on, detector misconfigured).
SUSPECT_BAD_FRACTION = 0.02


def check_dark_quality(part: "ModuleDark", label: str) -> None:
    """Refuse a module whose every pixel is bad (no usable dark: all zeros, no signal); warn when many are."""
    bad = float(np.count_nonzero(part.status_mask)) / part.status_mask.size
    if bad >= 1.0:
        raise DataError(f"{label}: every pixel of module {part.module} is bad (dead, hot, noisy or pedestal out "
                        "of range); the dark data are unusable (all zeros? detector off?); choose another dark run")
    if bad > SUSPECT_BAD_FRACTION:
        log.warning("%s: %.1f%% of the pixels of module %d are bad, more than a dark run should have; was the "
                    "beam on (X-rays) or the detector misconfigured? Check the run before using these constants",
                    label, 100 * bad, part.module)


def _check_frames(counts: np.ndarray, cells: np.ndarray, min_frames: int, label: str, module: int) -> None:
    """Raise :class:`DataError` for the first cell with fewer than ``min_frames`` frames."""
    few = np.flatnonzero(counts < min_frames)
    if len(few):
        c = few[np.argmin(counts[few])]
        raise DataError(f"{label}, module {module}: memory cell {int(cells[c])} has only {int(counts[c])} "
                        f"dark frames (need >= {min_frames}, {len(few)} of {len(cells)} cells too few); "
                        "take a longer dark run or lower dark.min_frames")
