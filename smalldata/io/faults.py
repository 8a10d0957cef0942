"""Data found inconsistent while reading: which train, which module or source, and why.

Run access checks every row it reads against the train the file's INDEX gives it
(``image.trainId`` of each DSSC module, ``<group>.trainId`` of instrument sources such
as the XGM, the digitizer and the bunch pattern), every source's entries against the
trains extra-data misplaces after a 0 in ``INDEX/trainId`` (:mod:`smalldata.io.indexcheck`;
the train of the 0 is recorded under the file's name), and the modules' memory cells
against each other (:mod:`smalldata.io.cellcheck`). A row that fails is not used: the
(train, module) pair is marked invalid, or the point value becomes NaN, and the fault
is recorded here, to be written to ``/meta`` and summarised on the console.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Tuple

import numpy as np

log = logging.getLogger(__name__)


class FaultLog:
    """(trainId, where, reason) of the rows that could not be trusted, one entry per train and place."""

    def __init__(self):
        self._entries: Dict[Tuple[int, str], str] = {}

    def add(self, train_ids: np.ndarray, where: str, reasons) -> None:
        """Record trains ``train_ids`` at ``where`` (e.g. ``"module 3"``) with one reason each (or one for all)."""
        train_ids = np.asarray(train_ids, dtype=np.uint64).reshape(-1)
        if isinstance(reasons, str):
            reasons = [reasons] * len(train_ids)
        new = 0
        for tid, reason in zip(train_ids.tolist(), reasons):
            if (tid, where) not in self._entries:
                self._entries[(tid, where)] = reason
                new += 1
        if new:
            log.debug("%d train(s) of %s not used: %s", new, where, reasons[0])

    def entries(self) -> List[Tuple[int, str, str]]:
        """All faults as (trainId, where, reason), sorted by train then place."""
        return sorted((t, w, r) for (t, w), r in self._entries.items())

    def extend(self, entries) -> None:
        """Add entries from :meth:`entries` of another log (e.g. another rank's)."""
        for tid, where, reason in entries:
            self._entries.setdefault((int(tid), where), reason)

    def __len__(self) -> int:
        return len(self._entries)

    def by_place(self) -> Dict[str, int]:
        """Number of faulty trains per place."""
        counts: Dict[str, int] = {}
        for _, where in self._entries:
            counts[where] = counts.get(where, 0) + 1
        return dict(sorted(counts.items()))


def describe_mismatch(stored: np.ndarray, expected: np.ndarray, key: str) -> List[str]:
    """One reason per mismatching row: what the row says and what the INDEX says."""
    return [f"{key} {int(s)} where the INDEX says train {int(e)}" for s, e in zip(stored, expected)]
