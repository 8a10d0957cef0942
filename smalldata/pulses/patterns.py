"""Frame patterns within a train and intra-dark subtraction.

A :class:`FramePattern` is a list of labels that repeats along the frames of
every train: frame ``f`` has label ``labels[f % len(labels)]``. Labels
containing ``"dark"`` (any case) mark frames without X-rays (intra-darks).
:func:`subtract_intra_darks` subtracts, from every non-dark frame, either its
matching dark frame or a per-train mean of dark frames.

The functions work on a batch of frames ``(N, ...)`` and group them by train
id; the event loop hands whole trains to each batch, so every frame's darks are
in the same batch and results do not depend on the batch size. See
``docs/pulses.md``.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.lookup import find_sorted

log = logging.getLogger(__name__)

#: Intra-dark subtraction modes.
SUBTRACTION_MODES = ("matching", "matching_mean", "train_mean")
#: Ways to find a frame's matching dark label.
MATCH_MODES = ("next", "name")


def is_dark_label(label: str) -> bool:
    """True if ``label`` names dark frames (contains ``"dark"``, any case)."""
    return "dark" in label.lower()


def _dark_stem(label: str) -> str:
    """``"pumped_dark"`` -> ``"pumped"``: the label without "dark" and separators."""
    low = label.lower()
    i = low.index("dark")
    return (label[:i] + label[i + 4:]).strip("_- ")


class FramePattern:
    """Labels of the frames of a train, repeating with the pattern's period.

    Parameters
    ----------
    labels : sequence of str
        Label of frame 0, 1, ... of a pattern repetition, e.g.
        ``["pumped", "unpumped"]`` or ``["pumped", "pumped_dark", "unpumped",
        "unpumped_dark"]``. Default ``["image"]``: all frames alike.
    """

    def __init__(self, labels: Sequence[str] = ("image",)):
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)) or len(labels) == 0:
            raise ConfigError("frame_pattern", f"{labels!r} is not a pattern; use a list of labels, "
                                               "e.g. [pumped, unpumped]")
        for label in labels:
            if not isinstance(label, str) or not label.strip() or "/" in label:
                raise ConfigError("frame_pattern", f"label {label!r} is not valid; use a non-empty name "
                                                   "without '/', e.g. pumped")
        self.labels: Tuple[str, ...] = tuple(labels)
        self.period = len(self.labels)
        #: Distinct labels in order of first appearance: the label axis of cubes.
        self.unique_labels: Tuple[str, ...] = tuple(dict.fromkeys(self.labels))
        ids = {label: i for i, label in enumerate(self.unique_labels)}
        #: (period,) int64: label id of each pattern position.
        self.position_label_id = np.array([ids[label] for label in self.labels], dtype=np.int64)
        #: (L,) bool: which unique labels are dark.
        self.label_is_dark = np.array([is_dark_label(label) for label in self.unique_labels], dtype=bool)
        #: (period,) bool: which pattern positions are dark.
        self.position_is_dark = self.label_is_dark[self.position_label_id]

    @property
    def dark_labels(self) -> Tuple[str, ...]:
        """The dark labels, in order of first appearance."""
        return tuple(lb for lb, d in zip(self.unique_labels, self.label_is_dark) if d)

    def label_ids(self, frame_index: np.ndarray) -> np.ndarray:
        """Label id (index into :attr:`unique_labels`) of each frame, (N,) int64."""
        return self.position_label_id[np.asarray(frame_index, dtype=np.int64) % self.period]

    def labels_of(self, frame_index: np.ndarray) -> np.ndarray:
        """Label of each frame as an (N,) str array."""
        return np.asarray(self.unique_labels, dtype=object)[self.label_ids(frame_index)].astype(str)

    def is_dark(self, frame_index: np.ndarray) -> np.ndarray:
        """True for frames with a dark label, (N,) bool."""
        return self.position_is_dark[np.asarray(frame_index, dtype=np.int64) % self.period]

    def matching_dark_labels(self, match_by: str = "next") -> Dict[str, str]:
        """Matching dark label of every non-dark label.

        ``match_by="next"``: the label of the first dark position after the
        label's (first) position, wrapping around the pattern.
        ``match_by="name"``: the dark label that reads like the label plus
        "dark" (``pumped`` -> ``pumped_dark`` or ``dark_pumped``).
        """
        offsets = self.dark_offsets(match_by)
        result = {}
        for pos, label in enumerate(self.labels):
            if not self.position_is_dark[pos] and label not in result:
                result[label] = self.labels[(pos + offsets[pos]) % self.period]
        return result

    def dark_offsets(self, match_by: str = "next") -> np.ndarray:
        """Frame offset from each pattern position to its matching dark frame.

        Returns
        -------
        ndarray, (period,) int64
            For a non-dark position ``p``: ``d`` in ``1 .. period - 1`` such that
            the matching dark of frame ``f`` is frame ``f + d`` (the nearest
            matching dark position after ``p``, wrapping around the pattern). 0
            for dark positions.
        """
        if match_by not in MATCH_MODES:
            raise ConfigError("dark_match", f"{match_by!r} is not a matching rule; use one of {', '.join(MATCH_MODES)}")
        if not self.position_is_dark.any():
            raise ConfigError("frame_pattern", f"{list(self.labels)} has no dark label; intra-dark subtraction "
                                               "needs labels containing 'dark', e.g. [pumped, pumped_dark]")
        offsets = np.zeros(self.period, dtype=np.int64)
        for pos, label in enumerate(self.labels):
            if self.position_is_dark[pos]:
                continue
            for d in range(1, self.period):
                other = self.labels[(pos + d) % self.period]
                if not is_dark_label(other):
                    continue
                if match_by == "next" or _dark_stem(other) == label:
                    offsets[pos] = d
                    break
            else:
                raise ConfigError("dark_match", f"label {label!r} has no dark label named after it among "
                                                f"{list(self.dark_labels)}; name one {label}_dark or use "
                                                "dark_match: next")
        return offsets

    def __repr__(self) -> str:
        return f"FramePattern({list(self.labels)!r})"


def _train_groups(train_ids: np.ndarray) -> np.ndarray:
    """Dense train number (0..) of each frame."""
    _, inverse = np.unique(np.asarray(train_ids), return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def matching_dark_frames(train_ids: np.ndarray, frame_index: np.ndarray, pattern: FramePattern,
                         match_by: str = "next") -> np.ndarray:
    """Index (into the batch) of each non-dark frame's matching dark frame.

    The matching dark of frame ``f`` is frame ``f + d`` of the same train (see
    :meth:`FramePattern.dark_offsets`); if the train has no such frame, the
    matching dark of the previous repetition, ``f + d - period``.

    Returns
    -------
    ndarray, (N,) int64
        -1 for dark frames and for frames whose train lacks both candidates.
    """
    offsets = pattern.dark_offsets(match_by)
    fidx = np.asarray(frame_index, dtype=np.int64)
    group = _train_groups(train_ids)
    if fidx.shape != group.shape:
        raise DataError(f"train_ids {group.shape} and frame_index {fidx.shape} differ in shape")
    result = np.full(len(fidx), -1, dtype=np.int64)
    if len(fidx) == 0:
        return result
    stride = int(fidx.max()) + pattern.period + 1
    key = group * stride + fidx
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    delta = offsets[fidx % pattern.period]
    need = delta > 0
    for shift in (0, pattern.period):  # this repetition, then the previous one
        target_f = fidx + delta - shift
        want = need & (result < 0) & (target_f >= 0)
        target = group * stride + target_f
        pos, found = find_sorted(sorted_key, target)
        hit = want & found
        result[hit] = order[pos[hit]]
    return result


def _group_means(data: np.ndarray, valid: np.ndarray, keys: np.ndarray, n_keys: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-key mean over valid entries of frames with key >= 0: (n_keys, ...) float32 and counts."""
    sel = np.flatnonzero(keys >= 0)
    sel = sel[np.argsort(keys[sel], kind="stable")]
    shape = (n_keys,) + data.shape[1:]
    sums = np.zeros(shape, dtype=np.float64)
    counts = np.zeros(shape, dtype=np.int64)
    if len(sel):
        k = keys[sel]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        v = valid[sel]
        sums[k[starts]] = np.add.reduceat(np.where(v, data[sel], 0).astype(np.float64), starts, axis=0)
        counts[k[starts]] = np.add.reduceat(v.astype(np.int64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / counts).astype(np.float32)
    return means, counts


def subtract_intra_darks(data: np.ndarray, train_ids: np.ndarray, frame_index: np.ndarray,
                         pattern: FramePattern, mode: str = "matching", match_by: str = "next",
                         valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Subtract intra-dark frames from the other frames of their train.

    Parameters
    ----------
    data : ndarray, (N, ...) float
        Calibrated frames of whole trains.
    train_ids, frame_index : ndarray, (N,)
        Train id and position in the train of each frame.
    pattern : FramePattern
        Must contain at least one dark label.
    mode : str
        ``"matching"``: subtract the frame's matching dark frame (see
        :func:`matching_dark_frames`). ``"matching_mean"``: subtract the mean of
        the train's frames with the matching dark label. ``"train_mean"``:
        subtract the mean of all dark frames of the train.
    match_by : str
        ``"next"`` or ``"name"``, see :meth:`FramePattern.dark_offsets`
        (unused for ``"train_mean"``).
    valid : ndarray, (N, ...) bool, optional
        True = good pixel; means use good pixels only. Default: all good.

    Returns
    -------
    data, valid : ndarray, (N, ...) float32 and bool
        Non-dark frames with the dark subtracted; a pixel is good if it was good
        in the frame and in its dark (mean). Dark frames are returned
        unchanged. Frames without a dark in their train are NaN and not good.
    """
    if mode not in SUBTRACTION_MODES:
        raise ConfigError("intra_dark", f"{mode!r} is not a subtraction mode; "
                                        f"use one of {', '.join(SUBTRACTION_MODES)}")
    data = np.asarray(data)
    n = data.shape[0]
    fidx = np.asarray(frame_index, dtype=np.int64)
    if fidx.shape != (n,) or np.shape(train_ids) != (n,):
        raise DataError(f"train_ids {np.shape(train_ids)} and frame_index {fidx.shape} must be ({n},) like the data")
    valid = np.ones(data.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != data.shape:
        raise DataError(f"valid {valid.shape} and data {data.shape} differ in shape")
    out = data.astype(np.float32, copy=True)
    out_valid = valid.copy()
    dark = pattern.is_dark(fidx)
    if not pattern.position_is_dark.any():
        pattern.dark_offsets(match_by)  # raises the ConfigError
    light = np.flatnonzero(~dark)
    if len(light) == 0:
        return out, out_valid

    if mode == "matching":
        ref = matching_dark_frames(train_ids, fidx, pattern, match_by)[light]
        has = ref >= 0
        src = light[has]
        out[src] -= data[ref[has]]
        out_valid[src] &= valid[ref[has]]
        missing = light[~has]
    else:
        group = _train_groups(train_ids)
        if mode == "train_mean":
            keys = np.where(dark, group, -1)
            want = group[light]
            n_keys = int(group.max()) + 1
        else:
            n_lab = len(pattern.unique_labels)
            offsets = pattern.dark_offsets(match_by)
            pos = fidx % pattern.period
            matched_label = pattern.position_label_id[(pos + offsets[pos]) % pattern.period]
            label = pattern.position_label_id[pos]
            keys = np.where(dark, group * n_lab + label, -1)
            want = (group * n_lab + matched_label)[light]
            n_keys = (int(group.max()) + 1) * n_lab
        means, counts = _group_means(data, valid, keys, n_keys)
        frame_dark = np.zeros(n_keys, dtype=bool)
        frame_dark[np.unique(keys[keys >= 0])] = True
        has = frame_dark[want]
        src = light[has]
        out[src] -= means[want[has]]
        out_valid[src] &= counts[want[has]] > 0
        missing = light[~has]
    if len(missing):
        log.warning("%d frames have no intra-dark in their train; they are set to NaN and marked bad", len(missing))
        out[missing] = np.nan
        out_valid[missing] = False
    return out, out_valid
