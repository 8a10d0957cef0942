"""Event selections of the session: one-off cuts and named cuts (smalldata_tools' ``addCut``).

A named cut is a list of ``low <= dataset <= high`` conditions; :meth:`CutsMixin.getFilter`
gives its events as a bool array, :meth:`CutsMixin.frame_mask` the (trains, frames) keep-mask
the producer reads as ``rejection.user_mask`` (``write_config(frame_cut=...)`` writes it).

Conditions on a per-train group's dataset (a camera's ``viking/viking_total``) mix with
per-event ones by train id:

- on events (``per="event"``, the default): a frame passes when its train's row passes; a frame
  of a train the group has no row for fails;
- on a group's rows (``per="<cam>"``): the conditions on per-train datasets are taken on the row's
  train (a row of another group looked up by train id, no row fails); the conditions on per-event
  datasets together select frames, and a row passes them when its train has at least one
  selected frame. A cut with no per-event condition does not need the train to have frames.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from smalldata.errors import SmallDataError


class CutsMixin:
    """cut, addCut, removeCut, getFilter, frame_index and frame_mask of ``SmallDataAna``."""

    def cut(self, name: str, low: Optional[float] = None, high: Optional[float] = None,
            selection: Optional[np.ndarray] = None, per: str = "event") -> np.ndarray:
        """Bool selection ``low <= name <= high`` (NaN excluded), combined with ``selection``.

        ``per="event"``: one entry per event (a per-train value applies to every frame of its
        train); ``per="<cam>"``: one per row of that per-train group (a per-event condition
        passes a row when any frame of its train passes). ``selection`` is on the same rows.
        """
        if per == "event" or self.rows_of(name) != "event":
            values = np.asarray(self.on_events(name) if per == "event" else self.per_train(name, per))
            keep = _within(values, low, high, name)
        else:
            keep = self.train_selection(_within(np.asarray(self[name]), low, high, name), per)
        if selection is None:
            return keep
        selection = np.asarray(selection, bool)
        if selection.shape != keep.shape:
            raise SmallDataError(f"selection has {selection.size} entries, the {per} rows {keep.size}; give one per "
                                 "row")
        return keep & selection

    def addCut(self, name: str, low: Optional[float] = None, high: Optional[float] = None,
               cut: str = "default") -> np.ndarray:
        """Add ``low <= name <= high`` to the named cut ``cut``; returns its selection so far."""
        self[name]  # fails now, with a suggestion, if the dataset does not exist
        self.cuts.setdefault(cut, []).append((name, low, high))
        return self.getFilter(cut)

    def removeCut(self, name: Optional[str] = None, cut: str = "default") -> None:
        """Remove the conditions on dataset ``name`` from ``cut`` (all of ``cut`` when ``name`` is None)."""
        if cut not in self.cuts:
            raise SmallDataError(f"no cut named {cut!r}; cuts: {list(self.cuts)}")
        if name is None:
            del self.cuts[cut]
        else:
            self.cuts[cut] = [c for c in self.cuts[cut] if c[0] != name]

    def getFilter(self, cut: str = "default", per: str = "event") -> np.ndarray:
        """The rows passing every condition of the named cut ``cut`` (bool).

        ``per="event"``: one per event; ``per="<cam>"``: one per row of that per-train group
        (module docstring: how conditions of the two kinds of rows combine).
        """
        if cut not in self.cuts:
            raise SmallDataError(f"no cut named {cut!r}; cuts: {list(self.cuts) or 'none (use addCut)'}")
        if per == "event":
            keep = np.ones(len(self), bool)
            for name, low, high in self.cuts[cut]:
                keep = self.cut(name, low, high, keep)
            return keep
        keep = np.ones(len(self.train_ids(per)), bool)
        frames = None
        for name, low, high in self.cuts[cut]:
            if self.rows_of(name) == "event":
                frames = self.cut(name, low, high, frames)
            else:
                keep = self.cut(name, low, high, keep, per=per)
        return keep if frames is None else keep & self.train_selection(frames, per)

    def printCuts(self) -> Dict[str, List[Tuple[str, Optional[float], Optional[float]]]]:
        """The named cuts and how many events each keeps (logged), as a dict."""
        for cut in self.cuts:
            keep = self.getFilter(cut)
            conditions = ", ".join(f"{lo if lo is not None else '-inf'} <= {n} <= {hi if hi is not None else 'inf'}"
                                   for n, lo, hi in self.cuts[cut])
            self.log.info("cut %r: %s: %d of %d events", cut, conditions, keep.sum(), len(keep))
        return dict(self.cuts)

    @property
    def frame_index(self) -> np.ndarray:
        """Position of each event's frame in its train (0, 1, ...; every frame of a train has a row)."""
        tids = self["trainId"]
        if len(tids) == 0:
            return np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, tids[1:] != tids[:-1]])
        counts = np.diff(np.r_[starts, len(tids)])
        return np.arange(len(tids)) - np.repeat(starts, counts)

    def frame_mask(self, selection) -> Tuple[np.ndarray, np.ndarray]:
        """``(train_ids, mask)`` of a selection (or a named cut) in the layout of ``rejection.user_mask``.

        ``mask`` is (trains, most frames per train) bool, True = keep frame f of that train.
        """
        keep = self.getFilter(selection) if isinstance(selection, str) else np.asarray(selection, bool)
        tids = self["trainId"]
        if keep.shape != tids.shape:
            raise SmallDataError(f"selection has {keep.size} entries, the run {len(tids)} events")
        trains, row = np.unique(tids, return_inverse=True)
        index = self.frame_index
        mask = np.zeros((len(trains), int(index.max()) + 1 if len(index) else 0), dtype=bool)
        mask[row, index] = keep
        return trains, mask


def _within(values: np.ndarray, low: Optional[float], high: Optional[float], name: str) -> np.ndarray:
    """``low <= values <= high`` as bool, NaN excluded; values must be one scalar per row."""
    if values.ndim != 1:
        raise SmallDataError(f"{name!r} has {values.ndim} dimensions per run; cut on a scalar dataset")
    keep = np.isfinite(values) if values.dtype.kind == "f" else np.ones(len(values), bool)
    if low is not None:
        keep &= values >= low
    if high is not None:
        keep &= values <= high
    return keep
