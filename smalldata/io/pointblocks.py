"""Entries of per-train sources (XGM, bunch pattern, digitizer, slow data), read in blocks and checked.

:class:`SourceBlocks` reads one key of a source for a block of consecutive trains at
once and serves the following batches from memory. Before a value is used, its train
is checked: an instrument source's entries against the train id each records
(``<group>.trainId``), every source's against the trains that extra-data misplaces
because of a damaged ``INDEX/trainId`` (:mod:`smalldata.io.indexcheck`). Entries that
fail are not used (their trains get NaN) and are recorded in the run's fault log.
Non-finite values are left to the caller (:class:`smalldata.io.pointdata.PointReader`).
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import numpy as np

from smalldata.errors import DataError
from smalldata.io.faults import FaultLog, describe_mismatch
from smalldata.io.indexcheck import ZeroTrainEntries, check_key_rows
from smalldata.lookup import find_sorted

log = logging.getLogger(__name__)

#: Bytes of one key's entries read at once (large entries such as digitizer traces get fewer trains).
BLOCK_BYTES = 32 << 20


class SourceBlocks:
    """Blocks of per-train entries of the run's sources.

    Parameters
    ----------
    data : extra_data.DataCollection
        The opened run.
    faults : FaultLog
        Where entries that are not used are recorded.
    zero_entries : ZeroTrainEntries
        The trains extra-data misplaces per source.
    path : path
        The run (for messages).
    """

    def __init__(self, data, faults: FaultLog, zero_entries: ZeroTrainEntries, path=None):
        self.data = data
        self.faults = faults
        self.zero_entries = zero_entries
        self.path = path
        self.train_ids = np.asarray(data.train_ids, dtype=np.uint64)  # what extra-data's positions refer to
        self._keydata_cache: Dict[tuple, object] = {}
        self._blocks: Dict[tuple, tuple] = {}

    def has_key(self, source: str, key: str) -> bool:
        """Whether ``source`` with ``key`` is in the run."""
        return source in self.data.all_sources and key in self.data[source].keys()

    def train_values(self, source: str, key: str, train_ids: np.ndarray, block_trains: int = 256) -> np.ndarray:
        """One value per train (slow data, or the first entry per train), NaN where missing.

        Returns (T, ...) float64 aligned with ``train_ids`` (ascending).
        """
        train_ids = np.asarray(train_ids, dtype=np.uint64)
        if len(train_ids) == 0:
            return np.zeros(0)
        tids, values = self.block(source, key, train_ids, block_trains)
        uniq, first = np.unique(tids, return_index=True)  # keep the first entry per train
        values = values[first].astype(np.float64)
        out = np.full((len(train_ids),) + values.shape[1:], np.nan)
        pos, found = find_sorted(uniq, train_ids)
        out[found] = values[pos[found]]
        return out

    def block(self, source: str, key: str, train_ids: np.ndarray, block_trains: int = 256):
        """Entries of ``source``/``key`` for ``train_ids`` as (entry train ids, values).

        Reads blocks of ``block_trains`` consecutive trains at once (fewer for large
        entries: about :data:`BLOCK_BYTES`) and serves the following batches from memory.
        """
        from extra_data import by_index

        t0, t1 = train_ids[0], train_ids[-1]
        block = self._blocks.get((source, key))
        if block is None or not (block[0] <= t0 and t1 <= block[1]):
            full = self._keydata(source, key)
            entry_bytes = int(np.prod(full.entry_shape, dtype=np.int64)) * full.dtype.itemsize
            ahead = int(np.clip(BLOCK_BYTES // max(entry_bytes, 1), 1, block_trains))
            p0 = int(np.searchsorted(self.train_ids, t0))
            p1 = max(int(np.searchsorted(self.train_ids, t1, "right")), min(p0 + ahead, len(self.train_ids)))
            if p1 <= p0:  # none of these trains has entries of any source here
                return np.zeros(0, dtype=np.uint64), np.zeros((0,) + full.entry_shape, dtype=full.dtype)
            kd = full.select_trains(by_index[p0:p1])
            tids = np.asarray(kd.train_id_coordinates(), dtype=np.uint64)
            values = kd.ndarray()
            good = self._check_shifted(source, tids)  # first: the root cause is what gets recorded
            good &= self._check_stored_ids(source, full, by_index[p0:p1], tids)
            tids, values = tids[good], values[good]
            block = (self.train_ids[p0], self.train_ids[p1 - 1], tids, values)
            self._blocks[(source, key)] = block
        _, _, tids, values = block
        lo, hi = np.searchsorted(tids, t0, "left"), np.searchsorted(tids, t1, "right")
        return tids[lo:hi], values[lo:hi]

    def _check_stored_ids(self, source: str, keydata, selection, tids: np.ndarray) -> np.ndarray:
        """Entries whose recorded train id is the train the INDEX gives them (all True for slow data)."""
        stored = self._stored_train_ids(source, keydata, selection)
        good = np.ones(len(tids), dtype=bool)
        if stored is None or len(stored) != len(tids) or np.array_equal(stored, tids):
            return good
        good = stored == tids  # rows the INDEX gives to another train than they hold: not used
        bad_trains, first = np.unique(tids[~good], return_index=True)
        self.faults.add(bad_trains, source, describe_mismatch(stored[~good][first], bad_trains,
                                                              self._train_key(keydata)))
        log.debug("run %s: %s has entries whose %s differs from the INDEX in %d train(s) from %d on; "
                  "their values are NaN", self.path, source, self._train_key(keydata), len(bad_trains),
                  int(bad_trains[0]))
        return good

    def _check_shifted(self, source: str, tids: np.ndarray) -> np.ndarray:
        """Entries not taken from another train by extra-data (:class:`ZeroTrainEntries`)."""
        shifted = self.zero_entries.shifted(source)
        if not shifted:
            return np.ones(len(tids), dtype=bool)
        bad = np.isin(tids, np.fromiter(shifted, dtype=np.uint64, count=len(shifted)))
        for tid in np.unique(tids[bad]).tolist():
            self.faults.add([tid], source, shifted[tid])
        return ~bad

    @staticmethod
    def _train_key(keydata) -> str:
        return f"{keydata.index_group}.trainId" if keydata.index_group else "trainId"

    def _stored_train_ids(self, source: str, keydata, selection) -> Optional[np.ndarray]:
        """The train id each entry of an instrument source records (None for slow data, which has none)."""
        if source not in self.data.instrument_sources:
            return None
        key = self._train_key(keydata)
        if key not in self.data[source].keys():
            return None
        return np.asarray(self.data[source, key].select_trains(selection).ndarray(), dtype=np.uint64).reshape(-1)

    def _keydata(self, source: str, key: str):
        """The run's KeyData of ``source``/``key``, its files' INDEX checked against their rows once."""
        if (source, key) in self._keydata_cache:
            return self._keydata_cache[(source, key)]
        if source not in self.data.all_sources:
            raise DataError(f"run {self.path} has no source {source!r}; check the point_data source names")
        if key not in self.data[source].keys():
            raise DataError(f"source {source!r} in run {self.path} has no key {key!r}; check the point_data key")
        keydata = self.data[source, key]
        fix = f"leave {source} out of the config (point_data, pulses or digitizer) or replace the file"
        check_key_rows(keydata, self.path, fix)
        if source in self.data.instrument_sources and self._train_key(keydata) in self.data[source].keys():
            check_key_rows(self.data[source, self._train_key(keydata)], self.path, fix)
        self._keydata_cache[(source, key)] = keydata
        return keydata
