"""Run access through extra-data: trains, frame bookkeeping, batches, point data.

:class:`RunAccess` wraps an ``extra_data.DataCollection`` and answers what the event
loop asks: which trains there are, how many frames each module has per train, the raw
frames of a block of trains for the selected modules only, slow values per train and
per-pulse values per train.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.constants import INSTRUMENT
from smalldata.detectors.dssc import DSSC
from smalldata.detectors.types import DetectorType
from smalldata.errors import DataError
from smalldata.io.cellcheck import CellCheck
from smalldata.io.buffers import BufferPool
from smalldata.io.faults import FaultLog, describe_mismatch
from smalldata.io.frameindex import ModuleFrameIndex, frames_in_window
from smalldata.io.indexcheck import ZeroTrainEntries, check_key_rows
from smalldata.io.pointblocks import SourceBlocks
from smalldata.lookup import find_sorted
from smalldata.plugin.frames import RawBatch

log = logging.getLogger(__name__)

#: Read-ahead is asked for only while frames arrive slower than this (bytes per second).
READ_AHEAD_BELOW = 1e9
#: Batch arrays handed out that the pool keeps track of (:class:`~smalldata.io.buffers.BufferPool`):
#: a caller that holds a batch while it reads the next still gets its arrays back after release.
BATCH_BUFFERS = 2


def find_run_directory(proposal: int, run: int, data_root: Optional[os.PathLike] = None) -> Path:
    """The raw run directory ``<root>/<instrument>/<cycle>/p<proposal>/raw/r<run>``.

    ``data_root`` defaults to ``$EXTRA_DATA_DATA_ROOT``, then extra-data's default.
    """
    if data_root is None:
        from extra_data.read_machinery import data_root_dir

        data_root = data_root_dir()
    root = Path(data_root)
    pattern = f"*/*/p{proposal:06d}/raw/r{run:04d}"
    matches = sorted(p for p in root.glob(pattern) if p.is_dir())
    if not matches:
        raise DataError(f"run {run} of proposal {proposal} not found: no directory {root / pattern}; "
                        "check -p/-r and data_root (or $EXTRA_DATA_DATA_ROOT)")
    preferred = [p for p in matches if p.parts[-5] == INSTRUMENT]
    return (preferred or matches)[0]


class RunAccess:
    """Read access to one run.

    Parameters
    ----------
    data : extra_data.DataCollection
        The opened run.
    path : Path, optional
        Where it was opened from (for messages).
    detector_type : DetectorType
        The per-pulse detector whose frames :meth:`read_raw` reads: its module sources, image
        key, module shape and raw dtype (the DSSC by default).
    """

    def __init__(self, data, path: Optional[Path] = None, detector_type: DetectorType = DSSC):
        if not detector_type.per_pulse:
            raise DataError(f"{detector_type.name} is a per-train camera: RunAccess reads the modules of a per-pulse "
                            "detector (the DSSC); a camera's images are read per train")
        self.data = data
        self.path = path
        self.detector_type = detector_type
        data_ids = np.asarray(data.train_ids, dtype=np.uint64)
        self._counts_cache: Dict[int, np.ndarray] = {}
        self._frame_indexes: Dict[int, ModuleFrameIndex] = {}
        #: the arrays of batches' frames: handed out by :meth:`read_raw`, given back by :meth:`release`
        self.buffers = BufferPool(BATCH_BUFFERS)
        self._read_rate: Optional[float] = None  # bytes per second of the last batch's frames
        #: rows not used because their ids disagree with the INDEX
        self.faults = FaultLog()
        #: files of the run directory extra-data could not open
        self.unreadable_files: list = []
        #: trains read at once for ids and point data
        self.block_trains = 256
        #: trains that extra-data misplaces or drops because an INDEX/trainId entry is 0
        self.zero_entries = ZeroTrainEntries(data.files)
        for tid, where, reason in self.zero_entries.lost:
            self.faults.add([tid], where, reason)
        # the run's trains: also those that every file lost to a 0 in INDEX/trainId (listed, never silently gone)
        self.train_ids = np.union1d(data_ids, self.zero_entries.lost_train_ids())
        self._data_pos = np.searchsorted(self.train_ids, data_ids)  # extra-data's trains among them
        self._sources = SourceBlocks(data, self.faults, self.zero_entries, path)
        self._cells = CellCheck(self._frame_index)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, proposal: int, run: int, data_root: Optional[os.PathLike] = None,
             detector_type: DetectorType = DSSC) -> "RunAccess":
        """Open run ``run`` of ``proposal`` under ``data_root`` (``detector_type``: see :class:`RunAccess`)."""
        return cls.from_directory(find_run_directory(proposal, run, data_root), detector_type)

    @classmethod
    def from_directory(cls, path: os.PathLike, detector_type: DetectorType = DSSC) -> "RunAccess":
        """Open the run in directory ``path`` (``detector_type``: see :class:`RunAccess`)."""
        from extra_data import RunDirectory

        path = Path(path)
        if not path.is_dir():
            raise DataError(f"run directory {path} does not exist")
        try:
            data = RunDirectory(str(path))
        except (OSError, ValueError, Exception) as exc:  # extra-data raises plain Exception too
            raise DataError(f"cannot open run {path}: {exc}") from None
        if len(data.train_ids) == 0:
            raise DataError(f"run {path} contains no trains")
        opened = {Path(f.filename).name for f in data.files}
        unreadable = sorted(p.name for p in path.glob("*.h5") if p.name not in opened)
        if unreadable:  # extra-data skips files it cannot open (truncated, damaged): their trains are missing
            log.warning("run %s: cannot read %s (truncated or damaged?); their trains are missing for those "
                        "sources and counted as losses", path, ", ".join(unreadable))
        access = cls(data, path, detector_type)
        access.unreadable_files = unreadable
        return access

    @classmethod
    def from_run(cls, run, data_root: Optional[os.PathLike] = None,
                 proposal: Optional[int] = None, detector_type: DetectorType = DSSC) -> "RunAccess":
        """Access to ``run``, given as a run number, a run directory, a DataCollection or a RunAccess.

        Parameters
        ----------
        run : int, path, extra_data.DataCollection or RunAccess
            A run number is found under ``data_root`` for ``proposal`` (:meth:`open`), a
            directory opened with :meth:`from_directory`; a RunAccess is returned as it is.
        data_root : path, optional
            Root of the raw data tree (for a run number).
        proposal : int, optional
            Proposal number (needed for a run number).
        detector_type : DetectorType
            The per-pulse detector (see :class:`RunAccess`); a RunAccess keeps its own.
        """
        if isinstance(run, RunAccess):
            return run
        if isinstance(run, (int, np.integer)):
            if proposal is None:
                raise DataError(f"run {run}: a proposal number is needed to find the run; pass -p")
            return cls.open(int(proposal), int(run), data_root, detector_type)
        if isinstance(run, (str, os.PathLike)):
            return cls.from_directory(run, detector_type)
        return cls(run, detector_type=detector_type)

    # ------------------------------------------------------------------ detector bookkeeping
    def available_modules(self) -> tuple:
        """Modules of the detector type that have data in this run."""
        sources = self.data.instrument_sources
        det_type = self.detector_type
        return tuple(m for m in range(det_type.n_modules) if det_type.source(m) in sources)

    def check_modules(self, modules: Sequence[int]) -> None:
        """Raise :class:`DataError` if none of ``modules`` is in the run; warn for the missing ones."""
        available = set(self.available_modules())
        missing = [m for m in modules if m not in available]
        if len(missing) == len(modules):
            raise DataError(f"run {self.path}: no file for {self.detector_type.name} module(s) {list(modules)} "
                            f"(available: {sorted(available)}); check the detector's modules in the config")
        if missing:
            log.warning("run %s: no files for %s module(s) %s; their pixels are marked invalid",
                        self.path, self.detector_type.name, missing)

    def module_frame_counts(self, module: int) -> np.ndarray:
        """Frames per train of one module, aligned with :attr:`train_ids` (0 where missing)."""
        if module not in self._counts_cache:
            src = self.detector_type.source(module)
            counts = np.zeros(len(self.train_ids), dtype=np.int64)
            if src in self.data.instrument_sources:
                counts[self._data_pos] = self.data[src, self.detector_type.image_key].data_counts(labelled=False)
                counts[self._shifted_positions(module)] = 0  # their rows are another train's: none of them
            self._counts_cache[module] = counts
        return self._counts_cache[module]

    def frame_counts(self, modules: Sequence[int]) -> np.ndarray:
        """(T, M) frames per train and module."""
        return np.stack([self.module_frame_counts(m) for m in modules], axis=1)

    def frames_per_train(self, modules: Sequence[int]) -> np.ndarray:
        """(T,) frames per train: the most any of ``modules`` has for that train."""
        return self.frame_counts(modules).max(axis=1)

    # ------------------------------------------------------------------ reading frames
    def read_raw(self, modules: Sequence[int], train_ids: np.ndarray,
                 window: Optional[Tuple[int, int]] = None) -> RawBatch:
        """Raw frames of ``train_ids`` (ascending, of this run) for ``modules``.

        Frames of a train are aligned across modules by their position in the train;
        a module with fewer frames (or none) for a train is marked absent there.
        ``window`` ``(start, stop)``: only the frames at those positions of each train (a
        piece of a train too long for one batch).
        """
        modules = tuple(modules)
        train_ids = np.asarray(train_ids, dtype=np.uint64)
        tpos = np.searchsorted(self.train_ids, train_ids)
        if np.any(tpos >= len(self.train_ids)) or np.any(self.train_ids[np.minimum(tpos, len(self.train_ids) - 1)]
                                                           != train_ids):
            raise DataError(f"train ids {train_ids} are not all in run {self.path}")
        counts = frames_in_window(self.frame_counts(modules)[tpos], window)  # (T, M)
        per_train = counts.max(axis=1)
        n = int(per_train.sum())
        starts = np.concatenate([[0], np.cumsum(per_train)[:-1]]).astype(np.int64)
        frame_train = np.repeat(train_ids, per_train)
        frame_index = np.arange(n, dtype=np.int64) - np.repeat(starts, per_train) + (0 if window is None else window[0])

        complete = bool(np.all(counts == per_train[:, None]))
        data = self._batch_buffer(n, len(modules), zeroed=not complete)
        present = np.zeros((n, len(modules)), dtype=bool)
        module_pids = np.zeros((n, len(modules)), dtype=np.uint64)
        module_cids = np.zeros((n, len(modules)), dtype=np.uint16)
        started = time.perf_counter()
        for j, module in enumerate(modules):
            mcounts = counts[:, j]
            total = int(mcounts.sum())
            if total == 0:
                continue
            # destination rows: the first mcounts[t] frames of each train
            rows = np.arange(n) if total == n else np.concatenate(
                [np.arange(s, s + c) for s, c in zip(starts, mcounts) if c > 0])
            index = self._frame_index(module)
            try:
                if total == n:  # straight into the batch: the module's column of every row
                    index.read("data", tpos, data, column=j, window=window)
                else:
                    buf = np.empty((total, 1) + tuple(self.detector_type.module_shape), dtype=data.dtype)
                    index.read("data", tpos, buf, window=window)
                    data[rows, j] = buf[:, 0]
                tids, pids, cids = (index.read_block_cached(key, tpos, dtype, self.block_trains, window)
                                    for key, dtype in (("trainId", np.uint64), ("pulseId", np.uint64),
                                                       ("cellId", np.uint16)))
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"cannot read {self.detector_type.name} module {module} for trains "
                                f"{int(train_ids[0])}..{int(train_ids[-1])} of {self.path}: {exc}; the file may be "
                                "truncated") from None
            good = tids == frame_train[rows]
            if not good.all():  # rows the INDEX gives to another train than they hold: not used
                self._reject_rows(module, frame_train[rows][~good], tids[~good])
                data[rows[~good], j] = 0
                rows, pids, cids = rows[good], pids[good], cids[good]
            present[rows, j] = True
            module_pids[rows, j] = pids
            module_cids[rows, j] = cids
        self._read_rate = data.nbytes / max(time.perf_counter() - started, 1e-9)
        slipped = self._cells.slipped(modules, present, module_cids, frame_index)
        if slipped.any():  # a module's cells against the other modules' and its own usual ones: not used
            self._drop_slipped(modules, slipped, data, present, module_cids, frame_train, frame_index)
        # the frame's ids: those of the first module that has it
        first = np.argmax(present, axis=1)
        have = present.any(axis=1)
        pulse_ids = np.where(have, module_pids[np.arange(n), first], 0).astype(np.uint64)
        self._check_pulse_ids(modules, present, module_pids, pulse_ids, first, frame_train, frame_index)
        cell_ids = np.where(have, module_cids[np.arange(n), first], 0).astype(np.uint16)
        np.copyto(module_cids, cell_ids[:, None], where=~present)  # absent frames: no cell of their own
        same_cells = bool(np.all(module_cids == cell_ids[:, None]))
        return RawBatch(train_ids=frame_train, pulse_ids=pulse_ids, cell_ids=cell_ids,
                        frame_index=frame_index, modules=modules, data=data, present=present,
                        module_pulse_ids=module_pids, module_cell_ids=None if same_cells else module_cids)

    def _batch_buffer(self, n: int, n_modules: int, zeroed: bool) -> np.ndarray:
        """An (n, n_modules, rows, columns) array of the raw dtype for a batch's frames, from :attr:`buffers`.

        A batch's array serves a later read once the caller gave the batch back
        (:meth:`release`); a batch the caller keeps is never written over.
        """
        det_type = self.detector_type
        data = self.buffers.take((n, n_modules) + tuple(det_type.module_shape), np.dtype(det_type.raw_dtype))
        if zeroed:
            data.fill(0)
        return data

    def release(self, raw: RawBatch) -> None:
        """Give a batch from :meth:`read_raw` back: its frames' memory serves a later read.

        Call it once nothing uses ``raw.data`` any more (a reused array is written over);
        a batch that is never given back stays the caller's and the next read takes a new array.
        """
        self.buffers.release(raw.data)

    def _check_pulse_ids(self, modules, present, module_pids, pulse_ids, first, frame_train, frame_index) -> None:
        """Raise :class:`DataError` unless every module recorded the same pulse id in each frame."""
        clash = present & (module_pids != pulse_ids[:, None])
        if clash.any():
            i, j = (int(v) for v in np.argwhere(clash)[0])
            raise DataError(f"run {self.path}: {self.detector_type.name} module {modules[j]} has pulse id "
                            f"{int(module_pids[i, j])} in "
                            f"frame {int(frame_index[i])} of train {int(frame_train[i])} where module "
                            f"{modules[int(first[i])]} has {int(pulse_ids[i])}; the modules disagree on the pulse "
                            f"of a frame: leave module {modules[j]} out of detectors.<name>.modules")

    def _shifted_positions(self, module: int) -> np.ndarray:
        """Positions in :attr:`train_ids` of the trains whose rows of ``module`` extra-data takes from the
        train before (:class:`ZeroTrainEntries`), each recorded as a fault of the module."""
        shifted = self.zero_entries.shifted(self.detector_type.source(module))
        tids = np.fromiter(shifted, dtype=np.uint64, count=len(shifted))
        pos, found = find_sorted(self.train_ids, tids)
        for tid in tids[found].tolist():
            self.faults.add([tid], f"module {module}", shifted[tid])
        return pos[found]

    def _drop_slipped(self, modules, slipped, data, present, module_cids, frame_train, frame_index) -> None:
        """Mark the frames of :meth:`CellCheck.slipped` absent (data 0) and record each (train, module)."""
        for j in np.flatnonzero(slipped.any(axis=0)).tolist():
            rows = np.flatnonzero(slipped[:, j])
            trains, first = np.unique(frame_train[rows], return_index=True)
            reasons = []
            for i in rows[first].tolist():
                k = next(k for k in range(len(modules)) if present[i, k] and module_cids[i, k] != module_cids[i, j])
                usual = self._cells.usual_cells(modules[j])[int(frame_index[i])]
                reasons.append(CellCheck.reason(modules[j], int(module_cids[i, j]), int(frame_index[i]), int(usual),
                                                modules[k], int(module_cids[i, k])))
            self.faults.add(trains, f"module {modules[j]}", reasons)
            data[rows, j] = 0
            log.debug("run %s: %s module %d: cell sequence slipped in %d train(s) from %d on", self.path,
                      self.detector_type.name, modules[j], len(trains), int(trains[0]))
        present &= ~slipped

    def _reject_rows(self, module: int, expected: np.ndarray, stored: np.ndarray) -> None:
        """Record frames whose ``image.trainId`` is not the train the INDEX gives them."""
        trains, first = np.unique(expected, return_index=True)
        self.faults.add(trains, f"module {module}", describe_mismatch(stored[first], trains, "image.trainId"))
        log.debug("run %s: %s module %d has frames whose image.trainId differs from the INDEX in %d "
                  "train(s) from %d on; those frames are invalid for module %d", self.path, self.detector_type.name,
                  module, len(trains), int(trains[0]), module)

    def prefetch(self, modules: Sequence[int], train_ids: np.ndarray) -> None:
        """Start reading the frames of ``train_ids`` into the page cache (returns at once).

        Only while reading waits on storage (the last batch came slower than
        :data:`READ_AHEAD_BELOW`): for frames already in the page cache the request
        costs more than it saves (the kernel visits every page, about 1 ms per full
        frame).
        """
        if self._read_rate is not None and self._read_rate > READ_AHEAD_BELOW:
            return
        tpos = np.searchsorted(self.train_ids, np.asarray(train_ids, dtype=np.uint64))
        tpos = tpos[tpos < len(self.train_ids)]
        for module in modules:
            if self.module_frame_counts(module).any():
                self._frame_index(module).prefetch("data", tpos)

    def _frame_index(self, module: int) -> ModuleFrameIndex:
        """Where the module's frames are, per train (resolved once through extra-data)."""
        if module not in self._frame_indexes:
            source = self.detector_type.source(module)
            image_key = self.detector_type.image_key
            for key in (image_key, "image.trainId", "image.pulseId", "image.cellId"):
                check_key_rows(self.data[source, key], self.path,
                               f"leave module {module} out of detectors.<name>.modules or replace the file")
            index = ModuleFrameIndex(self.data[source, image_key], self.train_ids)
            index.count[self._shifted_positions(module)] = 0  # as in module_frame_counts: never read
            self._frame_indexes[module] = index
        return self._frame_indexes[module]

    def cell_ids(self, module: int, train_ids: Optional[np.ndarray] = None) -> np.ndarray:
        """Memory cells of all frames of ``module`` (optionally only of ``train_ids``)."""
        from extra_data import by_id

        src = self.detector_type.source(module)
        if src not in self.data.instrument_sources:
            return np.zeros(0, dtype=np.uint16)
        self._frame_index(module)  # its INDEX checked against the rows first: one line, not extra-data's error
        data = self.data if train_ids is None else self.data.select_trains(by_id[np.asarray(train_ids)])
        return data[src, "image.cellId"].ndarray().reshape(-1)

    # ------------------------------------------------------------------ point data
    def has_key(self, source: str, key: str) -> bool:
        """Whether ``source`` with ``key`` is in the run."""
        return self._sources.has_key(source, key)

    def train_values(self, source: str, key: str, train_ids: np.ndarray) -> np.ndarray:
        """One value per train (slow data, or the first entry per train), NaN where missing or not trusted.

        Returns (T, ...) float64 aligned with ``train_ids`` (see :class:`SourceBlocks`).
        """
        return self._sources.train_values(source, key, train_ids, self.block_trains)
