"""Per-train detector groups (cameras) next to the per-event rows: finding them and joining by train id.

An output holds two kinds of rows. The top level has one row per event (a DSSC frame; in a
file of cameras only, one per train). A per-train detector ``<cam>`` (``/UserDataCfg/<cam>``
attributes ``type = "camera"``, ``per = "train"``) has its own rows: ``/<cam>/trainId``, one per
train with an image, and ``/<cam>/<func>_<key>`` on them. The two sets of trains differ: a camera
misses trains the events have and has trains the events lack. Everything here joins them by train
id, never by position:

- :func:`row_lookup` the row of each train id in a set of rows (or none);
- :func:`take_rows` rows gathered by train, NaN where the train has no row;
- :func:`reduce_to_trains` event values reduced (mean, sum, count) per train of a set of rows.

:class:`TrainRowsMixin` gives the session ``train_keys``, ``train_ids``, ``on_events``,
``per_train``, ``get`` and ``train_selection`` on top of these.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np

from smalldata.errors import DataError, SmallDataError
from smalldata.lookup import find_sorted

log = logging.getLogger(__name__)

#: reductions of an event value per train
REDUCTIONS = ("mean", "sum", "count")
#: attribute of a top-level group whose datasets have rows of their own, value "train"
OWN_ROWS_ATTR = "rows"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def per_train_groups(f: h5py.File) -> Dict[str, int]:
    """The per-train detector groups of an output with their number of rows.

    A group is per train when ``/UserDataCfg/<name>`` has the attribute ``per = "train"`` or the
    group ``/<name>`` itself ``rows = "train"`` (the writer marks both). Files that record
    neither (written before cameras) hold per-pulse detectors only.

    Raises
    ------
    DataError
        A detector recorded as per train without its ``/<name>/trainId`` rows.
    """
    names = {name for name, item in f.items() if isinstance(item, h5py.Group)
             and _text(item.attrs.get(OWN_ROWS_ATTR, "")) == "train"}
    if "UserDataCfg" in f:
        names |= {name for name, cfg in f["UserDataCfg"].items()
                  if isinstance(cfg, h5py.Group) and _text(cfg.attrs.get("per", "pulse")) == "train"}
    groups: Dict[str, int] = {}
    for name in sorted(names):
        rows = f.get(f"{name}/trainId")
        if not isinstance(rows, h5py.Dataset) or rows.ndim != 1:
            raise DataError(f"{f.filename}: {name!r} is a per-train detector but /{name}/trainId is "
                            "missing; the output is incomplete: produce it again with smd_producer")
        groups[name] = int(rows.shape[0])
    return groups


def row_lookup(row_tids: np.ndarray, tids: np.ndarray, name: str = "rows") -> Tuple[np.ndarray, np.ndarray]:
    """The row of ``row_tids`` that holds each of ``tids``, and whether there is one.

    Parameters
    ----------
    row_tids : array (R,)
        Train id of each row (any order, each train at most once).
    tids : array (K,)
        Train ids to look up.
    name : str
        How error messages name the rows (e.g. ``viking/trainId``).

    Returns
    -------
    rows : ndarray (K,) int64
        Row index (0 where not found).
    found : ndarray (K,) bool
    """
    row_tids, tids = np.asarray(row_tids), np.asarray(tids)
    order = np.argsort(row_tids, kind="stable")
    ordered = row_tids[order]
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if twice.size:
        raise DataError(f"{name} holds train {int(twice[0])} twice; a per-train group has one row per train: "
                        "produce the output again")
    pos, found = find_sorted(ordered, tids)
    rows = np.where(found, order[pos] if len(order) else 0, 0).astype(np.int64)
    return rows, found


def fill_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype that can hold NaN for missing rows: floats keep theirs, others become float64."""
    return np.dtype(dtype) if np.dtype(dtype).kind in "fc" else np.dtype(np.float64)


def take_rows(values: np.ndarray, rows: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``values[rows]`` with NaN where ``found`` is False (integers and flags become float64)."""
    values = np.asarray(values)
    out = values[rows] if len(values) else np.zeros((len(rows),) + values.shape[1:], values.dtype)
    out = out.astype(fill_dtype(values.dtype), copy=False)
    if not found.all():
        out[~found] = np.nan  # out is a copy: fancy indexing copies
    return out


def reduce_to_trains(values: np.ndarray, event_tids: np.ndarray, train_ids: np.ndarray, how: str = "mean",
                     keep: Optional[np.ndarray] = None) -> np.ndarray:
    """Event values reduced per train, one result per entry of ``train_ids``.

    Parameters
    ----------
    values : array (N, ...)
        One row per event.
    event_tids : array (N,)
        Train of each event.
    train_ids : array (T,)
        The trains to give results for (e.g. a camera's ``trainId``), each once.
    how : {"mean", "sum", "count"}
        Mean or sum over the train's frames, or their number. Non-finite values (a rejected
        frame's NaN) are left out, element by element.
    keep : array (N,) bool, optional
        Only these events count.

    Returns
    -------
    ndarray (T, ...)
        float64; NaN for mean and sum where a train has no (finite) value, 0 counts there.
    """
    if how not in REDUCTIONS:
        raise SmallDataError(f"how={how!r}: give one of {', '.join(REDUCTIONS)}")
    values = np.asarray(values)
    rows, found = row_lookup(train_ids, event_tids, "train ids")
    use = found if keep is None else found & np.asarray(keep, bool)
    tail = values.shape[1:]
    k = int(np.prod(tail, dtype=np.int64))
    y = values[use].astype(np.float64).reshape(int(use.sum()), k)
    finite = np.isfinite(y)
    flat = (rows[use][:, None] * k + np.arange(k)[None, :]).ravel()
    size = len(train_ids) * k
    counts = np.bincount(flat, weights=finite.ravel().astype(np.float64), minlength=size)
    if how == "count":
        return counts.reshape((len(train_ids),) + tail)
    sums = np.bincount(flat, weights=np.where(finite, y, 0.0).ravel(), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts if how == "mean" else np.where(counts > 0, sums, np.nan)
    return out.reshape((len(train_ids),) + tail)


class TrainRowsMixin:
    """Per-train groups of ``SmallDataAna``: their keys, train ids, and values joined to events or trains."""

    #: per-train group name -> number of rows (set by the session when it opens the file)
    train_groups: Dict[str, int]

    def rows_of(self, key: str) -> str:
        """``"event"`` for a dataset on the event rows, else the name of its per-train group."""
        key = key.lstrip("/")
        if key not in self.info:
            self[key]  # raises with a suggestion
        return self.info[key].get("rows", "event")

    def train_keys(self, cam: Optional[str] = None) -> List[str]:
        """Datasets with one row per train of a per-train group (``cam``, or every group), ``<cam>/trainId`` too."""
        if cam is not None:
            self._check_group(cam)
        return [k for k, v in self.info.items() if v.get("rows", "event") != "event" and not v["ragged"]
                and (cam is None or v["rows"] == cam)]

    def train_ids(self, cam: Optional[str] = None) -> np.ndarray:
        """The trains of ``cam``'s rows (``/<cam>/trainId``); ``cam=None``: the events' trains, each once, sorted."""
        if cam is None:
            return np.unique(self["trainId"])
        self._check_group(cam)
        return self[f"{cam}/trainId"]

    def on_events(self, key: str) -> np.ndarray:
        """``key`` with one row per event: a per-train value repeated on every frame of its train.

        Frames of a train the group has no row for get NaN (integers and flags become float64).
        A per-event dataset is returned as it is.
        """
        group = self.rows_of(key)
        if group == "event":
            return self[key]
        rows, found = row_lookup(self[f"{group}/trainId"], self["trainId"], f"{group}/trainId")
        return take_rows(self[key], rows, found)

    def per_train(self, key: str, cam: Optional[str] = None, how: str = "mean",
                  selection: Optional[np.ndarray] = None) -> np.ndarray:
        """``key`` with one row per train of ``cam``, in the order of ``ana.train_ids(cam)``.

        Parameters
        ----------
        key : str
            A per-event dataset: its frames reduced per train (``how``: ``"mean"``, ``"sum"``,
            ``"count"``; NaN values left out; NaN where the train has no frame). A per-train
            dataset: its rows looked up by train (NaN where its group has no row for the train).
        cam : str, optional
            The per-train group whose trains give the rows; default the only one of the file,
            and in a file without per-train groups the events' trains (``ana.train_ids()``).
        selection : array (N,) bool or str, optional
            Only these events count (a named cut: its per-event filter); per-event keys only.
        """
        cam = self._default_group(cam)
        target = self.train_ids(cam)
        group = self.rows_of(key)
        if group != "event":
            if selection is not None:
                raise SmallDataError(f"{key!r} is per train: selection= selects events; use "
                                     f"ana.getFilter(cut, per={cam!r}) to select its rows")
            if group == cam:
                return self[key]
            rows, found = row_lookup(self[f"{group}/trainId"], target, f"{group}/trainId")
            return take_rows(self[key], rows, found)
        keep = self._event_selection(selection)
        return reduce_to_trains(self[key], self["trainId"], target, how, keep)

    def on_rows(self, key: str, rows: str) -> np.ndarray:
        """``key`` on the events (``rows="event"``, :meth:`on_events`) or on a group's rows (:meth:`per_train`, mean)."""
        return self.on_events(key) if rows == "event" else self.per_train(key, rows)

    def get(self, key: str, per: Optional[str] = None, how: str = "mean") -> np.ndarray:
        """``key`` on the rows asked for.

        ``per=None``: as stored (``ana[key]``); ``"event"``: one row per event
        (:meth:`on_events`); ``"train"`` or a per-train group's name: one row per train of that
        group (:meth:`per_train` with ``how``; ``"train"`` takes the file's only group).
        """
        if per is None:
            return self[key]
        if per == "event":
            return self.on_events(key)
        return self.per_train(key, None if per == "train" else per, how)

    def train_selection(self, selection, cam: Optional[str] = None, how: str = "any") -> np.ndarray:
        """An event selection (bool per event, a named cut, or None: every event) as one bool per row of ``cam``.

        ``how="any"``: a row is selected when its train has at least one selected frame;
        ``"all"``: when it has frames and every one is selected. Trains without frames are not
        selected.
        """
        if how not in ("any", "all"):
            raise SmallDataError(f"how={how!r}: give 'any' or 'all'")
        keep = self._event_selection(selection)
        keep = np.ones(len(self), bool) if keep is None else keep
        cam = self._default_group(cam)
        target = self.train_ids(cam)
        chosen = reduce_to_trains(keep, self["trainId"], target, "sum")
        if how == "any":
            return chosen > 0
        frames = reduce_to_trains(np.ones(len(keep)), self["trainId"], target, "sum")
        return np.isfinite(frames) & (chosen == frames)

    # ------------------------------------------------------------------ helpers
    def _check_group(self, cam: str) -> None:
        if cam not in self.train_groups:
            raise SmallDataError(f"{cam!r} is not a per-train group of {self.path}; per-train groups: "
                                 f"{', '.join(sorted(self.train_groups)) or 'none'}")

    def _default_group(self, cam: Optional[str]) -> Optional[str]:
        """``cam`` checked; None: the only per-train group, or None (the events' trains) without any."""
        if cam is not None:
            self._check_group(cam)
            return cam
        if len(self.train_groups) > 1:
            raise SmallDataError(f"{self.path} has several per-train groups ({', '.join(sorted(self.train_groups))});"
                                 " name one with cam=...")
        return next(iter(self.train_groups), None)

    def _event_selection(self, selection) -> Optional[np.ndarray]:
        """A selection (bool per event or a named cut's name) as a bool array, None stays None."""
        if selection is None:
            return None
        keep = self.getFilter(selection) if isinstance(selection, str) else np.asarray(selection, bool)
        if keep.shape != (len(self),):
            raise SmallDataError(f"selection has {keep.size} entries, the run {len(self)} events; give one per event")
        return keep
