"""INDEX sections that extra-data reads wrongly or cannot read: found before any value is used.

Two kinds of damage are checked here:

- ``INDEX/trainId`` holding 0 before other trains of a file. extra-data drops the 0 from
  the file's train list but keeps the ``first``/``count`` entries by position, so every
  later train of that file gets the entries of the train before it (CONTROL sources
  too, which carry no train id of their own to catch this), and the train of the 0
  has none. :class:`ZeroTrainEntries` finds these trains for every file of the run.
- An INDEX that points at more rows than a dataset holds (a count too large, a
  dataset cut short): :func:`check_key_rows` names the file, the source and the key.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import DataError

log = logging.getLogger(__name__)

#: Sources named in one reason at most; the rest are counted.
SOURCES_NAMED = 4


class ZeroTrainEntries:
    """Trains whose entries extra-data misplaces because ``INDEX/trainId`` holds 0 before other trains.

    Parameters
    ----------
    files : sequence of extra_data FileAccess
        The run's files.

    Attributes
    ----------
    lost : list of (trainId, file name, reason)
        The trains of the 0 entries (found between their neighbours): their entries of
        every source of the file are lost.
    """

    def __init__(self, files: Sequence):
        self.lost: List[Tuple[int, str, str]] = []
        self._shifted: Dict[str, Dict[int, str]] = {}
        for fa in files:
            raw = np.asarray(fa.file["INDEX/trainId"][()], dtype=np.uint64)
            zeros = np.flatnonzero(raw == 0)
            if len(zeros) == 0:
                continue
            nonzero = np.flatnonzero(raw != 0)
            zeros = zeros[zeros < (nonzero[-1] if len(nonzero) else 0)]  # trailing zeros are padding
            if len(zeros) == 0:
                continue
            self._add_file(fa, raw, zeros)

    def _add_file(self, fa, raw: np.ndarray, zeros: np.ndarray) -> None:
        name = Path(fa.filename).name
        sources = sorted(fa.control_sources | fa.instrument_sources)
        named = ", ".join(sources[:SOURCES_NAMED]) + (f" and {len(sources) - SOURCES_NAMED} more"
                                                      if len(sources) > SOURCES_NAMED else "")
        for z in zeros.tolist():
            tid = _train_between(raw, z)
            if tid is None:
                log.warning("%s: INDEX/trainId is 0 at entry %d and its neighbours do not tell which train it "
                            "was; that train's entries of %s are missing", name, z, named)
                continue
            self.lost.append((tid, name, f"INDEX/trainId is 0 at entry {z} of this file (train {tid} by its "
                                         f"neighbours): its entries of {named} are lost"))
        shifted = [int(t) for t in raw[zeros[0] + 1:] if t != 0]  # extra-data gives each the entry before it
        z0 = int(zeros[0])
        for source in sources:
            self._shifted.setdefault(source, {}).update(
                {t: f"INDEX/trainId is 0 at entry {z0} of {name}: extra-data gives this train the entries of the "
                    "train before it" for t in shifted})
        log.warning("%s: INDEX/trainId is 0 at entr%s %s; the %d following train(s) of %d source(s) are not "
                    "used (extra-data would shift their values by one train)", name,
                    "y" if len(zeros) == 1 else "ies", zeros.tolist(), len(shifted), len(sources))

    def shifted(self, source: str) -> Dict[int, str]:
        """``{trainId: reason}`` of the trains whose entries of ``source`` extra-data takes from another train."""
        return self._shifted.get(source, {})

    def lost_train_ids(self) -> np.ndarray:
        """Train ids of :attr:`lost`, ascending, without repeats."""
        return np.unique(np.array([t for t, _, _ in self.lost], dtype=np.uint64))


def _train_between(raw: np.ndarray, z: int) -> Optional[int]:
    """The train of a 0 entry: the one its nearest non-zero neighbours leave room for (None if unclear)."""
    before = raw[:z][raw[:z] != 0]
    after = raw[z + 1:][raw[z + 1:] != 0]
    gap_before = z - (np.flatnonzero(raw[:z] != 0)[-1] if len(before) else -1)
    gap_after = (np.flatnonzero(raw[z + 1:] != 0)[0] + 1) if len(after) else None
    if len(before) and len(after) and int(after[0]) - int(before[-1]) == gap_before + gap_after:
        return int(before[-1]) + gap_before
    if not len(before) and len(after) and int(after[0]) > gap_after:
        return int(after[0]) - gap_after  # the file's first entries: trains count on consecutively
    return None


def check_key_rows(keydata, run_path, fix: str) -> None:
    """Raise :class:`DataError` if an INDEX of ``keydata``'s files points at rows its dataset lacks.

    The entries of one file's trains must not overlap (a count too large gives the next
    train's rows to this one as well) and must end within the dataset (a count too
    large at the end, or a dataset cut short).

    Parameters
    ----------
    keydata : extra_data.KeyData
        One key of one source over the run.
    run_path : path
        The run (for the message).
    fix : str
        What the user can do, e.g. ``"leave module 2 out of detectors.<name>.modules"``.
    """
    path = keydata.hdf5_data_path
    for fa in keydata.files:
        firsts, counts = fa.get_index(keydata.source, keydata.index_group)
        counts = np.asarray(counts, dtype=np.int64)
        used = counts > 0
        if not used.any():
            continue
        name = Path(fa.filename).name
        firsts, counts = np.asarray(firsts, dtype=np.int64)[used], counts[used]
        order = np.argsort(firsts, kind="stable")
        ends = firsts[order] + counts[order]
        overlap = np.flatnonzero(firsts[order][1:] < ends[:-1])
        if len(overlap):
            i = order[overlap[0]]
            raise DataError(f"run {run_path}: {name}: the INDEX of {keydata.source} gives rows {firsts[i]}.."
                            f"{firsts[i] + counts[i] - 1} to one train and row {firsts[order[overlap[0] + 1]]} "
                            f"to the next (a count too large); the file is damaged (extra-data-validate shows "
                            f"it): {fix}")
        try:
            rows = int(fa.file[path].shape[0])
        except (KeyError, OSError) as exc:
            raise DataError(f"run {run_path}: {name} has no readable {path} ({exc}) although its INDEX lists "
                            f"entries of {keydata.source}; the file is damaged: {fix}") from None
        if rows < int(ends.max()):
            raise DataError(f"run {run_path}: {name}: the INDEX of {keydata.source} counts {int(ends.max())} "
                            f"rows but {keydata.key} holds {rows}; the file is damaged (extra-data-validate "
                            f"shows it): {fix}")
