"""Frame rejection as reason bits, and vetoes that stop a function chain.

Every rejection criterion sets one bit in a per-frame ``uint16`` reason word;
0 means the frame is kept. :class:`FrameRejection` bundles the configured
criteria. A :class:`Veto` is a condition on an analysis function's per-frame
output; frames for which it holds skip the functions after it in the chain
(their outputs are filled, see :mod:`smalldata.plugin.skipped`). See ``docs/pulses.md``.
"""
from __future__ import annotations

import enum
import logging
import operator
import os
from typing import Dict, List, Mapping, Optional

import numpy as np

from smalldata.errors import ConfigError, DataError
from smalldata.lookup import find_sorted
from smalldata.plugin.skipped import spread

log = logging.getLogger(__name__)

REASON_DTYPE = np.uint16


class Reason(enum.IntFlag):
    """Why a frame was rejected (bits of the per-frame reason word)."""

    MAX_FRAMES = 1            #: frame index >= max_frames
    XGM_LOW = 2               #: XGM below xgm_min, or no XGM value for an X-ray frame
    XGM_HIGH = 4              #: XGM above xgm_max
    DIGITIZER = 8             #: digitizer integral outside [digitizer_min, digitizer_max] or missing
    USER_MASK = 16            #: False (or absent) in the user's frame mask
    VETO = 32                 #: a veto condition held
    DARK_FRAME_EXCLUDED = 64  #: dark frame, excluded on request


def reason_names(bits: int) -> List[str]:
    """Names of the reasons set in ``bits``, e.g. ``["XGM_LOW", "VETO"]``."""
    return [r.name for r in Reason if int(bits) & int(r)]


def reason_table() -> Dict[str, int]:
    """``{name: bit}`` of all reasons (for the output file's attributes)."""
    return {r.name: int(r) for r in Reason}


def _optional_number(name: str, value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or np.isnan(value):
        raise ConfigError(name, f"{value!r} is not a number; use a number or null (no limit)")
    return float(value)


def max_frames_reasons(frame_index: np.ndarray, max_frames: Optional[int] = None) -> np.ndarray:
    """:attr:`Reason.MAX_FRAMES` for frames at index ``>= max_frames`` in their train (None: no limit)."""
    fidx = np.asarray(frame_index)
    if max_frames is None:
        return np.zeros(fidx.shape, dtype=REASON_DTYPE)
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise ConfigError("max_frames", f"{max_frames!r} is not valid; use an integer >= 1 or null")
    return np.where(fidx >= max_frames, Reason.MAX_FRAMES, 0).astype(REASON_DTYPE)


def threshold_reasons(values: np.ndarray, vmin: Optional[float], vmax: Optional[float], low_bit: int,
                      high_bit: int, applies: Optional[np.ndarray] = None) -> np.ndarray:
    """Reason bits for values outside ``[vmin, vmax]``.

    Parameters
    ----------
    values : ndarray, (N,) float
    vmin, vmax : float or None
        Inclusive limits; None: no limit on that side.
    low_bit, high_bit : int
        Bit set below ``vmin`` (and for NaN or +-inf, if any limit is set) / above ``vmax``.
    applies : ndarray, (N,) bool, optional
        Frames the limits apply to (e.g. frames expecting X-rays); default all.
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=REASON_DTYPE)
    if vmin is None and vmax is None:
        return out
    applies = np.ones(values.shape, dtype=bool) if applies is None else np.asarray(applies, dtype=bool)
    if applies.shape != values.shape:
        raise DataError(f"applies {applies.shape} and values {values.shape} differ in shape")
    missing = ~np.isfinite(values)  # NaN and +-inf alike: no measurement
    low = missing.copy()
    if vmin is not None:
        low |= values < vmin
    out[applies & low] |= REASON_DTYPE(low_bit)
    if vmax is not None:
        out[applies & ~missing & (values > vmax)] |= REASON_DTYPE(high_bit)
    return out


def xgm_reasons(xgm: np.ndarray, xgm_min: Optional[float] = None, xgm_max: Optional[float] = None,
                applies: Optional[np.ndarray] = None) -> np.ndarray:
    """:attr:`Reason.XGM_LOW` / :attr:`Reason.XGM_HIGH` for per-frame XGM energies (in the XGM's unit, uJ)."""
    return threshold_reasons(xgm, _optional_number("xgm_min", xgm_min), _optional_number("xgm_max", xgm_max),
                             Reason.XGM_LOW, Reason.XGM_HIGH, applies)


def digitizer_reasons(integral: np.ndarray, digitizer_min: Optional[float] = None,
                      digitizer_max: Optional[float] = None, applies: Optional[np.ndarray] = None) -> np.ndarray:
    """:attr:`Reason.DIGITIZER` for per-frame digitizer integrals outside the limits (ADU x samples)."""
    return threshold_reasons(integral, _optional_number("digitizer_min", digitizer_min),
                             _optional_number("digitizer_max", digitizer_max),
                             Reason.DIGITIZER, Reason.DIGITIZER, applies)


def dark_reasons(is_dark: np.ndarray, exclude_dark: bool = False) -> np.ndarray:
    """:attr:`Reason.DARK_FRAME_EXCLUDED` for dark frames when ``exclude_dark``."""
    is_dark = np.asarray(is_dark, dtype=bool)
    if not exclude_dark:
        return np.zeros(is_dark.shape, dtype=REASON_DTYPE)
    return np.where(is_dark, Reason.DARK_FRAME_EXCLUDED, 0).astype(REASON_DTYPE)


class UserFrameMask:
    """The user's keep/drop decision per train and frame (True = keep).

    Frames of trains missing from the mask, and frames beyond its columns, are
    dropped.

    Parameters
    ----------
    train_ids : ndarray, (T,) int
        Train ids of the mask rows (unique).
    mask : ndarray, (T, F) bool
        True = keep frame ``f`` of that train.
    """

    def __init__(self, train_ids: np.ndarray, mask: np.ndarray):
        train_ids = np.asarray(train_ids).astype(np.uint64).reshape(-1)
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape[0] != len(train_ids):
            raise ConfigError("user_mask", f"mask has shape {mask.shape} for {len(train_ids)} trains; "
                                           "use a (trains, frames) boolean array")
        if mask.dtype != bool:
            if not np.all(np.isin(mask, (0, 1))):
                raise ConfigError("user_mask", "mask values must be booleans (or 0/1)")
            mask = mask.astype(bool)
        if len(np.unique(train_ids)) != len(train_ids):
            raise ConfigError("user_mask", "the mask's trainId has duplicates; give each train once")
        order = np.argsort(train_ids)
        self.train_ids = train_ids[order]
        self.mask = mask[order]

    @classmethod
    def from_file(cls, path: str, run_train_ids: Optional[np.ndarray] = None) -> "UserFrameMask":
        """Load a mask from ``.npy`` or HDF5.

        Parameters
        ----------
        path : str
            ``.npy``: a (T, F) boolean array whose rows are the run's trains in
            order (``run_train_ids`` required, same length). ``.h5``/``.hdf5``:
            datasets ``trainId`` (T,) and ``mask`` (T, F).
        run_train_ids : ndarray, (T,), optional
            All train ids of the run, for ``.npy`` masks.
        """
        if not os.path.isfile(path):
            raise ConfigError("user_mask", f"{path}: no such file; give a .npy or .h5 frame mask")
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            try:
                mask = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConfigError("user_mask", f"{path}: not a readable .npy array ({exc})") from None
            if run_train_ids is None:
                raise ConfigError("user_mask", f"{path}: a .npy mask needs the run's train ids; "
                                               "use an HDF5 mask with trainId and mask")
            if mask.ndim != 2 or mask.shape[0] != len(run_train_ids):
                raise ConfigError("user_mask", f"{path}: shape {mask.shape} does not match the run's "
                                               f"{len(run_train_ids)} trains; use (trains, frames)")
            return cls(run_train_ids, mask)
        if ext in (".h5", ".hdf5"):
            import h5py
            try:
                with h5py.File(path, "r") as f:
                    if "trainId" not in f or "mask" not in f:
                        raise ConfigError("user_mask", f"{path}: needs datasets 'trainId' and 'mask', "
                                                       f"found {sorted(f.keys())}")
                    return cls(f["trainId"][()], f["mask"][()])
            except OSError as exc:
                raise ConfigError("user_mask", f"{path}: not a readable HDF5 file ({exc})") from None
        raise ConfigError("user_mask", f"{path}: unknown extension {ext!r}; use .npy or .h5")

    def keep(self, train_ids: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """True where the mask keeps the frame, (N,) bool."""
        tid = np.asarray(train_ids).astype(np.uint64)
        fidx = np.asarray(frame_index, dtype=np.int64)
        if len(self.train_ids) == 0:
            return np.zeros(tid.shape, dtype=bool)
        pos, found = find_sorted(self.train_ids, tid)
        found &= (fidx >= 0) & (fidx < self.mask.shape[1])
        out = np.zeros(tid.shape, dtype=bool)
        out[found] = self.mask[pos[found], fidx[found]]
        return out

    def reasons(self, train_ids: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """:attr:`Reason.USER_MASK` where the mask drops the frame."""
        return np.where(self.keep(train_ids, frame_index), 0, Reason.USER_MASK).astype(REASON_DTYPE)


class FrameRejection:
    """All per-frame rejection criteria of a run.

    Parameters
    ----------
    max_frames : int or None
        Keep frames 0 .. max_frames - 1 of each train. None: all.
    xgm_min, xgm_max : float or None
        Inclusive limits on the frame's XGM pulse energy (in the XGM's unit, uJ
        for ``intensitySa3TD``); apply to frames expecting X-rays. None: no limit.
    digitizer_min, digitizer_max : float or None
        Inclusive limits on the frame's digitizer integral (ADU x samples).
    user_mask : str or None
        Path of a frame mask (see :meth:`UserFrameMask.from_file`).
    exclude_dark : bool
        Reject dark frames (labels containing "dark").
    run_train_ids : ndarray or None
        All train ids of the run (needed for ``.npy`` user masks).
    """

    def __init__(self, max_frames: Optional[int] = None, xgm_min: Optional[float] = None,
                 xgm_max: Optional[float] = None, digitizer_min: Optional[float] = None,
                 digitizer_max: Optional[float] = None, user_mask: Optional[str] = None,
                 exclude_dark: bool = False, run_train_ids: Optional[np.ndarray] = None):
        max_frames_reasons(np.zeros(0, dtype=np.int64), max_frames)  # validates
        self.max_frames = max_frames
        self.xgm_min = _optional_number("xgm_min", xgm_min)
        self.xgm_max = _optional_number("xgm_max", xgm_max)
        self.digitizer_min = _optional_number("digitizer_min", digitizer_min)
        self.digitizer_max = _optional_number("digitizer_max", digitizer_max)
        for lo, hi, name in ((self.xgm_min, self.xgm_max, "xgm_max"),
                             (self.digitizer_min, self.digitizer_max, "digitizer_max")):
            if lo is not None and hi is not None and hi < lo:
                raise ConfigError(name, f"{hi} is below the minimum {lo}; use a maximum >= the minimum")
        if not isinstance(exclude_dark, (bool, np.bool_)):
            raise ConfigError("exclude_dark", f"{exclude_dark!r} is not a boolean; use true or false")
        self.exclude_dark = bool(exclude_dark)
        self.user_mask = user_mask
        self._mask = None if user_mask is None else UserFrameMask.from_file(user_mask, run_train_ids)

    @property
    def needs_xgm(self) -> bool:
        """True when an XGM threshold is set (the per-frame XGM must be given to :meth:`reasons`)."""
        return self.xgm_min is not None or self.xgm_max is not None

    @property
    def needs_digitizer(self) -> bool:
        """True when a digitizer threshold is set (the per-frame integral must be given to :meth:`reasons`)."""
        return self.digitizer_min is not None or self.digitizer_max is not None

    def reasons(self, train_ids: np.ndarray, frame_index: np.ndarray, is_dark: Optional[np.ndarray] = None,
                xgm: Optional[np.ndarray] = None, digitizer: Optional[np.ndarray] = None) -> np.ndarray:
        """Reason bits (N,) uint16 of a batch; 0 = keep.

        Parameters
        ----------
        train_ids, frame_index : ndarray, (N,)
        is_dark : ndarray, (N,) bool, optional
            Dark frames (from the frame pattern): XGM and digitizer limits skip
            them. Default: no frame is dark.
        xgm, digitizer : ndarray, (N,) float, optional
            Per-frame values (NaN where missing); required if limits are set.
        """
        fidx = np.asarray(frame_index, dtype=np.int64)
        n = fidx.shape
        is_dark = np.zeros(n, dtype=bool) if is_dark is None else np.asarray(is_dark, dtype=bool)
        out = max_frames_reasons(fidx, self.max_frames)
        for needed, values, name in ((self.needs_xgm, xgm, "xgm"), (self.needs_digitizer, digitizer, "digitizer")):
            if needed and values is None:
                raise DataError(f"{name} limits are set but no per-frame {name} values were given")
        if self.needs_xgm:
            out |= xgm_reasons(xgm, self.xgm_min, self.xgm_max, ~is_dark)
        if self.needs_digitizer:
            out |= digitizer_reasons(digitizer, self.digitizer_min, self.digitizer_max, ~is_dark)
        if self._mask is not None:
            out |= self._mask.reasons(train_ids, fidx)
        out |= dark_reasons(is_dark, self.exclude_dark)
        return out

    def params(self) -> dict:
        """Parameters as configured (for ``UserDataCfg``)."""
        return {"max_frames": self.max_frames, "xgm_min": self.xgm_min, "xgm_max": self.xgm_max,
                "digitizer_min": self.digitizer_min, "digitizer_max": self.digitizer_max,
                "user_mask": self.user_mask, "exclude_dark": self.exclude_dark}


# ---------------------------------------------------------------------------- vetoes
VETO_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}


class Veto:
    """A condition on a per-frame output that skips the later functions.

    Parameters
    ----------
    key : str
        Output key as written (with the function prefix), e.g. ``"hit_npeaks"``.
    op : str
        One of ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``.
    value : float
        Compared with the output: the frame is vetoed where ``output op value``.
    """

    def __init__(self, key: str, op: str, value: float):
        if not isinstance(key, str) or not key:
            raise ConfigError("veto.key", f"{key!r} is not an output key; use a key such as roi_sum")
        if op not in VETO_OPS:
            raise ConfigError("veto.op", f"{op!r} is not a comparison; use one of {' '.join(VETO_OPS)}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError("veto.value", f"{value!r} is not a number; use a number")
        self.key = key
        self.op = op
        self.value = value

    def params(self) -> dict:
        """The veto's condition as configured: key, op and value."""
        return {"key": self.key, "op": self.op, "value": self.value}

    def __repr__(self) -> str:
        return f"Veto({self.key!r}, {self.op!r}, {self.value!r})"


def evaluate_veto(outputs: Mapping[str, np.ndarray], spec: Veto) -> np.ndarray:
    """Frames for which the veto condition holds.

    Parameters
    ----------
    outputs : dict of (N,) arrays
        Outputs of the functions run so far.
    spec : Veto

    Returns
    -------
    ndarray, (N,) bool
        True = vetoed: the condition ``outputs[key] op value`` holds, or the
        value is NaN (not computed, e.g. vetoed earlier).
    """
    if spec.key not in outputs:
        raise ConfigError("veto.key", f"{spec.key!r} is not an output of the functions before the veto; "
                                      f"use one of {', '.join(sorted(outputs))}")
    values = np.asarray(outputs[spec.key])
    if values.ndim != 1:
        raise ConfigError("veto.key", f"{spec.key!r} has shape {values.shape[1:]} per frame; "
                                      "a veto needs one number per frame")
    vetoed = np.asarray(VETO_OPS[spec.op](values, spec.value), dtype=bool)
    if values.dtype.kind in "fc":
        vetoed |= np.isnan(values)
    return vetoed


def expand_outputs(outputs: Mapping[str, np.ndarray], selected: np.ndarray) -> Dict[str, np.ndarray]:
    """Spread outputs computed for the ``selected`` frames back to all N frames.

    Parameters
    ----------
    outputs : dict of (n_selected, ...) arrays
    selected : ndarray, (N,) bool
        The frames that were processed (e.g. ``~vetoed``).

    Returns
    -------
    dict of (N, ...) arrays
        Skipped frames hold :func:`~smalldata.plugin.skipped.fill_value` of the dtype. The dtype depends
        only on the output's dtype, never on how many frames were skipped.
    """
    selected = np.asarray(selected, dtype=bool)
    n_sel = int(selected.sum())
    for key, value in outputs.items():
        if np.shape(value)[:1] != (n_sel,):
            raise DataError(f"output {key!r} has {np.shape(value)[:1]} rows for {n_sel} selected frames")
    return spread(outputs, selected, np.flatnonzero(selected))
