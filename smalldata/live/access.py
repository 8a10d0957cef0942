"""Trains of the live stream behind the interface the event loop reads a run through.

:class:`LiveAccess` answers the questions :class:`~smalldata.io.runaccess.RunAccess` answers
for a run on disk (trains, frames per train and module, raw frames of a block of trains, point
values per train), from the trains received so far. The detectors, functions, pulses,
rejection, cubes and sums therefore run unchanged on it. Raw frames are held only until
their train is processed (:meth:`LiveAccess.forget`); frame counts for the whole run and small
point values (up to :data:`KEEP_VALUE_BYTES` per train) for the last :data:`HISTORY_TRAINS`
trains, since the pump-laser anchoring looks back at earlier trains' bunch patterns.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.detectors.types import DetectorType
from smalldata.errors import DataError
from smalldata.io.faults import FaultLog
from smalldata.io.frameindex import frames_in_window
from smalldata.live.layouts import LiveTrain
from smalldata.plugin.frames import RawBatch

log = logging.getLogger(__name__)

#: Point values up to this size per train are kept for :data:`HISTORY_TRAINS` trains; larger ones
#: (traces) until their train is processed.
KEEP_VALUE_BYTES = 65536
#: Trains whose small point values are kept (the pump-laser anchoring looks back at earlier trains).
HISTORY_TRAINS = 2000


class KeyInfo:
    """What the set-up checks ask of a source's key: the shape and dtype of one entry."""

    def __init__(self, entry_shape: tuple, dtype: np.dtype):
        self.entry_shape = tuple(entry_shape)
        self.dtype = np.dtype(dtype)


class StreamSources:
    """The sources and keys the stream carries (``all_sources``, ``data[source, key]``)."""

    def __init__(self):
        self.keys: Dict[Tuple[str, str], KeyInfo] = {}
        self.all_sources: frozenset = frozenset()
        self.instrument_sources: frozenset = frozenset()

    def learn(self, train: LiveTrain) -> None:
        """Record the sources and keys of a train."""
        for (source, key), value in train.values.items():
            if (source, key) not in self.keys:
                arr = np.asarray(value)
                self.keys[(source, key)] = KeyInfo(arr.shape, arr.dtype)
        self.all_sources = self.all_sources | train.sources
        self.instrument_sources = self.instrument_sources | frozenset(s for s in train.sources if ":" in s)

    def __getitem__(self, item: Tuple[str, str]) -> KeyInfo:
        return self.keys[item]


class LiveAccess:
    """Read access to the trains received from a karabo bridge.

    Parameters
    ----------
    endpoint : str
        The bridge endpoint (in messages, as a run's path is).
    setup_trains : sequence of LiveTrain
        The first trains: they fix the modules and the keys the run has.
    detector_type : DetectorType
        The streamed per-pulse detector (module shape, raw dtype): the DSSC, whose layouts
        :mod:`smalldata.live.layouts` decodes.
    """

    def __init__(self, endpoint: str, setup_trains: Sequence[LiveTrain], detector_type: DetectorType = DSSC):
        self.path = endpoint
        self.detector_type = detector_type
        self.data = StreamSources()
        self.faults = FaultLog()
        self.unreadable_files: list = []
        self.block_trains = 256
        self._n = 0  # trains added so far; their ids and frame counts grow in arrays of doubling capacity
        self._ids = np.zeros(1024, dtype=np.uint64)
        self._counts = np.zeros((1024, 0), dtype=np.int64)
        self._held: Dict[int, LiveTrain] = {}
        self._values: Dict[Tuple[str, str], Dict[int, object]] = {}
        for train in setup_trains:
            self.data.learn(train)
        self._available = tuple(sorted({m for t in setup_trains for m in t.modules}))
        self._column = {m: j for j, m in enumerate(self._available)}
        self._counts = np.zeros((len(self._ids), len(self._available)), dtype=np.int64)
        self.add(setup_trains)

    @property
    def train_ids(self) -> np.ndarray:
        """(T,) uint64 ids of the trains added so far, ascending."""
        return self._ids[:self._n]

    # ------------------------------------------------------------------ trains
    def add(self, trains: Iterable[LiveTrain]) -> None:
        """Hold ``trains`` (ascending, newer than any added so far, or added before: held again) for reading."""
        trains = list(trains)
        last = int(self._ids[self._n - 1]) if self._n else -1
        for train in trains:
            if train.train_id <= last:  # added before (the set-up trains): their frames are held again
                pos = int(np.searchsorted(self.train_ids, np.uint64(train.train_id)))
                if pos >= self._n or int(self._ids[pos]) != train.train_id:
                    raise ValueError("live trains must be added in ascending order, each once")
                self._held[train.train_id] = train
        trains = [t for t in trains if t.train_id > last]
        if not trains:
            return
        ids = np.array([t.train_id for t in trains], dtype=np.uint64)
        if np.any(np.diff(ids.astype(np.int64)) <= 0):
            raise ValueError("live trains must be added in ascending order, each once")
        if self._n + len(ids) > len(self._ids):
            capacity = 2 * (self._n + len(ids))
            self._ids = np.concatenate([self._ids[:self._n], np.zeros(capacity - self._n, np.uint64)])
            grown = np.zeros((capacity, self._counts.shape[1]), dtype=np.int64)
            grown[:self._n] = self._counts[:self._n]
            self._counts = grown
        for i, train in enumerate(trains):
            self._held[train.train_id] = train
            for module, frames in train.modules.items():
                if module in self._column:
                    self._counts[self._n + i, self._column[module]] = len(frames.pulse_ids)
            for key, value in train.values.items():
                self._values.setdefault(key, {})[train.train_id] = value
        self._ids[self._n:self._n + len(ids)] = ids
        self._n += len(ids)
        if self._n > HISTORY_TRAINS:  # older trains' point values: memory bounded by the history
            old = self.train_ids[-HISTORY_TRAINS - len(ids):-HISTORY_TRAINS]
            for stored in self._values.values():
                for tid in old:
                    stored.pop(int(tid), None)

    def forget(self, train_ids: Iterable[int]) -> None:
        """Forget the frames (and large point values) of processed trains."""
        for tid in train_ids:
            train = self._held.pop(int(tid), None)
            if train is None:
                continue
            for key, value in train.values.items():
                if np.asarray(value).nbytes > KEEP_VALUE_BYTES:
                    self._values[key].pop(int(tid), None)

    def held(self) -> List[int]:
        """Train ids whose frames are held."""
        return sorted(self._held)

    # ------------------------------------------------------------------ detector bookkeeping
    def available_modules(self) -> tuple:
        """DSSC modules with frames in the set-up trains."""
        return self._available

    def check_modules(self, modules: Sequence[int]) -> None:
        """Raise :class:`DataError` if none of ``modules`` is in the stream; warn for the missing ones."""
        missing = [m for m in modules if m not in self._available]
        if len(missing) == len(modules):
            raise DataError(f"stream {self.path}: no DSSC module(s) {list(modules)} in the first trains "
                            f"(it has {list(self._available)}); check the detector's modules in the config "
                            "and the sources the bridge sends")
        if missing:
            log.warning("stream %s: no frames of DSSC module(s) %s; their pixels are marked invalid",
                        self.path, missing)

    def module_frame_counts(self, module: int) -> np.ndarray:
        """Frames per train of one module, aligned with :attr:`train_ids` (0 where missing)."""
        if module not in self._column:
            return np.zeros(self._n, dtype=np.int64)
        return self._counts[:self._n, self._column[module]]

    def frame_counts(self, modules: Sequence[int]) -> np.ndarray:
        """(T, M) frames per train and module."""
        return np.stack([self.module_frame_counts(m) for m in modules], axis=1).reshape(len(self.train_ids),
                                                                                     len(modules))

    def frames_per_train(self, modules: Sequence[int]) -> np.ndarray:
        """(T,) frames per train: the most any of ``modules`` has for that train."""
        return self.frame_counts(modules).max(axis=1) if len(modules) else np.zeros(len(self.train_ids), np.int64)

    def cell_ids(self, module: int, train_ids: Optional[np.ndarray] = None) -> np.ndarray:
        """Memory cells of the held frames of ``module`` (optionally only of ``train_ids``)."""
        ids = self.held() if train_ids is None else [int(t) for t in train_ids if int(t) in self._held]
        cells = [self._held[t].modules[module].cell_ids for t in ids if module in self._held[t].modules]
        return np.concatenate(cells) if cells else np.zeros(0, dtype=np.uint16)

    # ------------------------------------------------------------------ frames
    def read_raw(self, modules: Sequence[int], train_ids: np.ndarray,
                 window: Optional[Tuple[int, int]] = None) -> RawBatch:
        """Raw frames of held trains ``train_ids`` (ascending) for ``modules``, as
        :meth:`RunAccess.read_raw <smalldata.io.runaccess.RunAccess.read_raw>` gives them."""
        modules = tuple(modules)
        train_ids = np.asarray(train_ids, dtype=np.uint64)
        missing = [int(t) for t in train_ids if int(t) not in self._held]
        if missing:
            raise DataError(f"stream {self.path}: trains {missing} are not held (already processed?)")
        tpos = np.searchsorted(self.train_ids, train_ids)
        counts = frames_in_window(self.frame_counts(modules)[tpos], window)
        per_train = counts.max(axis=1) if len(modules) else np.zeros(len(train_ids), np.int64)
        n = int(per_train.sum())
        starts = np.concatenate([[0], np.cumsum(per_train)[:-1]]).astype(np.int64)
        first_frame = 0 if window is None else window[0]
        frame_train = np.repeat(train_ids, per_train)
        frame_index = np.arange(n, dtype=np.int64) - np.repeat(starts, per_train) + first_frame
        data = np.zeros((n, len(modules)) + tuple(self.detector_type.module_shape),
                        dtype=np.dtype(self.detector_type.raw_dtype))
        present = np.zeros((n, len(modules)), dtype=bool)
        module_pids = np.zeros((n, len(modules)), dtype=np.uint64)
        module_cids = np.zeros((n, len(modules)), dtype=np.uint16)
        for i, tid in enumerate(train_ids):
            train = self._held[int(tid)]
            for j, module in enumerate(modules):
                c = int(counts[i, j])
                frames = train.modules.get(module)
                if c == 0 or frames is None:
                    continue
                rows = slice(starts[i], starts[i] + c)
                take = slice(first_frame, first_frame + c)
                data[rows, j] = frames.data[take]
                present[rows, j] = True
                module_pids[rows, j] = frames.pulse_ids[take]
                module_cids[rows, j] = frames.cell_ids[take]
        first = np.argmax(present, axis=1)
        have = present.any(axis=1)
        pulse_ids = np.where(have, module_pids[np.arange(n), first], 0).astype(np.uint64)
        clash = present & (module_pids != pulse_ids[:, None])
        if clash.any():
            i, j = (int(v) for v in np.argwhere(clash)[0])
            raise DataError(f"stream {self.path}: DSSC module {modules[j]} has pulse id {int(module_pids[i, j])} "
                            f"in frame {int(frame_index[i])} of train {int(frame_train[i])} where another module "
                            f"has {int(pulse_ids[i])}; leave module {modules[j]} out of detectors.<name>.modules")
        cell_ids = np.where(have, module_cids[np.arange(n), first], 0).astype(np.uint16)
        np.copyto(module_cids, cell_ids[:, None], where=~present)
        same_cells = bool(np.all(module_cids == cell_ids[:, None]))
        return RawBatch(train_ids=frame_train, pulse_ids=pulse_ids, cell_ids=cell_ids, frame_index=frame_index,
                        modules=modules, data=data, present=present, module_pulse_ids=module_pids,
                        module_cell_ids=None if same_cells else module_cids)

    def prefetch(self, modules: Sequence[int], train_ids: np.ndarray) -> None:
        """Nothing to do: the frames of the stream are in memory already."""

    # ------------------------------------------------------------------ point data
    def has_key(self, source: str, key: str) -> bool:
        """Whether the first trains carried ``source`` with ``key``."""
        return (source, key) in self.data.keys

    def train_values(self, source: str, key: str, train_ids: np.ndarray) -> np.ndarray:
        """One value per train, (T, ...) float64 aligned with ``train_ids``, NaN where missing."""
        train_ids = np.asarray(train_ids, dtype=np.uint64)
        if (source, key) not in self.data.keys:
            raise DataError(f"stream {self.path} has no {source!r} / {key!r}; check the point_data source names")
        shape = self.data.keys[(source, key)].entry_shape
        stored = self._values.get((source, key), {})
        out = np.full((len(train_ids),) + shape, np.nan)
        for i, tid in enumerate(train_ids):
            value = stored.get(int(tid))
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.shape == shape:
                    out[i] = value
        return out
