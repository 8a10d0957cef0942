"""Laser-off references and running medians (smalldata_tools' ``getOffVar``).

The reference of a frame is the mean of the ``n`` laser-off frames nearest to it in time
(the frame itself left out); subtracting it removes drifts slower than the spacing of
those frames. A frame's time is ``trainId * 0.1 s + slot / 4.5 MHz`` (slot: the
bunch-pattern slot, or the pulseId without a bunch pattern).
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from smalldata.errors import SmallDataError

#: Seconds between trains and between bunch-pattern slots.
TRAIN_PERIOD_S = 0.1
SLOT_PERIOD_S = 1.0 / 4.5e6


def frame_times(train_ids: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Time of each frame relative to the first train, s."""
    tids = np.asarray(train_ids, dtype=np.int64)
    t0 = int(tids.min()) if len(tids) else 0
    return (tids - t0) * TRAIN_PERIOD_S + np.asarray(slots, dtype=np.float64) * SLOT_PERIOD_S


def off_reference(values: np.ndarray, off: np.ndarray, times: np.ndarray, n: int = 4,
                  statistic: str = "mean") -> np.ndarray:
    """Per frame: the mean (or median) of ``values`` over the ``n`` nearest laser-off frames in time.

    Parameters
    ----------
    values : (N,) float
    off : (N,) bool
        The reference frames (laser off, X-rays on, finite value).
    times : (N,) float
        Frame times, s.
    n : int
        Reference frames per frame.
    statistic : {"mean", "median"}

    Returns
    -------
    (N,) float64
        NaN only where fewer than ``n`` reference frames exist.
    """
    values = np.asarray(values, dtype=np.float64)
    off = np.asarray(off, bool) & np.isfinite(values)
    times = np.asarray(times, dtype=np.float64)
    if not (values.shape == off.shape == times.shape) or values.ndim != 1:
        raise SmallDataError("getOffVar: values, off-mask and times need one entry per event")
    if n < 1:
        raise SmallDataError(f"getOffVar: n={n}; use at least one reference frame")
    if statistic not in ("mean", "median"):
        raise SmallDataError(f"getOffVar: statistic={statistic!r}; use 'mean' or 'median'")
    ref_idx = np.flatnonzero(off)
    out = np.full(len(values), np.nan)
    if len(ref_idx) < n + 1:
        return out
    order = np.argsort(times[ref_idx], kind="stable")
    ref_idx = ref_idx[order]
    ref_t, ref_v = times[ref_idx], values[ref_idx]
    pos = np.searchsorted(ref_t, times)
    # candidates: n + 1 on each side (one of them may be the frame itself)
    span = np.arange(-(n + 1), n + 1)
    cand = pos[:, None] + span[None, :]
    inside = (cand >= 0) & (cand < len(ref_t))
    cand_c = np.clip(cand, 0, len(ref_t) - 1)
    dist = np.where(inside, np.abs(ref_t[cand_c] - times[:, None]), np.inf)
    dist = np.where(ref_idx[cand_c] == np.arange(len(values))[:, None], np.inf, dist)  # not itself
    # duplicates from clipping are outside: they have inf distance
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :n]
    chosen = np.take_along_axis(cand_c, nearest, axis=1)
    ok = np.isfinite(np.take_along_axis(dist, nearest, axis=1)).all(axis=1)
    picked = ref_v[chosen]
    ref = picked.mean(axis=1) if statistic == "mean" else np.median(picked, axis=1)
    out[ok] = ref[ok]
    return out


def running_median(values: np.ndarray, window: int, selection: Optional[np.ndarray] = None,
                   chunk: int = 65536) -> np.ndarray:
    """Centred running median over ``window`` selected events in event order (NaN left out).

    Events outside ``selection`` neither contribute nor get a value (NaN).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise SmallDataError("runningMedian: give a per-event scalar")
    if window < 1:
        raise SmallDataError(f"runningMedian: window={window}; use at least 1 event")
    sel = np.ones(len(values), bool) if selection is None else np.asarray(selection, bool)
    idx = np.flatnonzero(sel)
    v = values[idx]
    half = window // 2
    padded = np.concatenate([np.full(half, np.nan), v, np.full(window - 1 - half, np.nan)])
    med = np.empty(len(v))
    for start in range(0, len(v), chunk):
        stop = min(start + chunk, len(v))
        view = np.lib.stride_tricks.sliding_window_view(padded[start:stop + window - 1], window)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window gives NaN
            med[start:stop] = np.nanmedian(view, axis=1)
    out = np.full(len(values), np.nan)
    out[idx] = med
    return out
