"""Batches of frames as they travel through the event loop.

A :class:`RawBatch` is what run access reads: raw detector values of a batch of
frames for the selected modules. A :class:`Frames` is what analysis functions get:
calibrated values with a per-pixel validity mask (True = good) and the frame ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

import numpy as np


@dataclass
class RawBatch:
    """Raw frames of a batch, as read from the run.

    Attributes
    ----------
    train_ids, pulse_ids : ndarray, (N,) uint64
        Train id and pulse id of each frame.
    cell_ids : ndarray, (N,) uint16
        Memory cell of each frame.
    frame_index : ndarray, (N,) int64
        Position of the frame within its train (0-based).
    modules : tuple of int
        Detector module numbers along axis 1 of ``data``.
    data : ndarray, (N, M, rows, columns)
        Raw ADC values in the detector type's raw dtype and module shape ((N, M, 128, 512)
        uint16 for the DSSC, (N, 1, ny, nx) for a camera); zero where the module has no data
        for that frame.
    present : ndarray, (N, M) bool
        False where a module file missed the frame's train, or where the frame's ids
        read from the module disagree with the train it was indexed for.
    module_pulse_ids, module_cell_ids : ndarray, (N, M), optional
        Pulse ids and memory cells as each module recorded them (0 where absent);
        ``module_cell_ids`` is None when every present module agrees with ``cell_ids``.
    """

    train_ids: np.ndarray
    pulse_ids: np.ndarray
    cell_ids: np.ndarray
    frame_index: np.ndarray
    modules: tuple
    data: np.ndarray
    present: np.ndarray
    module_pulse_ids: Optional[np.ndarray] = None
    module_cell_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.train_ids)

    def select_modules(self, modules: tuple) -> "RawBatch":
        """The same frames restricted to ``modules`` (all in :attr:`modules`)."""
        modules = tuple(modules)
        if modules == tuple(self.modules):
            return self
        cols = [tuple(self.modules).index(m) for m in modules]

        def take(a):
            return None if a is None else a[:, cols]
        return replace(self, modules=modules, data=self.data[:, cols], present=self.present[:, cols],
                       module_pulse_ids=take(self.module_pulse_ids), module_cell_ids=take(self.module_cell_ids))


@dataclass
class Frames:
    """Calibrated frames handed to a :class:`~smalldata.plugin.detfunc.DetObjectFunc`.

    Attributes
    ----------
    data : ndarray, (N, ...) float32
        Calibrated values in ``units``.
    valid : ndarray, (N, ...) bool
        True where the pixel is good in that frame (static mask, not saturated,
        module present). Same shape as ``data``.
    units : str
        ``"ADU"`` (pedestal subtracted) or ``"photon"`` (also divided by the gain).
    train_ids, pulse_ids : ndarray, (N,) uint64
    cell_ids : ndarray, (N,) uint16
    modules : tuple of int or None
        For full detector frames ``(N, M, rows, columns)``: the module number of each
        entry along axis 1. None for derived frames (e.g. an ROI's pixels).
    origin : tuple of int
        Module pixel (row, column) of ``data[..., 0, 0]``: (0, 0) for whole modules; the
        corner of the calibrated box when the detector calibrates only a region of
        each module (see :meth:`~smalldata.plugin.detfunc.DetObjectFunc.required_region`).
    zeroed : bool
        True when ``data`` is already 0 wherever ``valid`` is False (an ROI's crop),
        so :func:`zero_invalid` has nothing to do.
    payload : mapping
        What a parent function computed from these very frames and hands to its children
        with them (e.g. ``{"droplets": DropletSet}``); empty for the detector's frames.
        :meth:`derived` and :meth:`subset` start with an empty payload unless given one.
    fused : FusedBatch or None
        The fused pass's results for the built-in functions of this batch
        (:mod:`smalldata.fused.plan`); with it, ``data`` and ``valid`` may be None when
        no function of the detector needs the calibrated pixels.
    module_cell_ids : ndarray, (N, M) or None
        Memory cell of each frame as each module along axis 1 recorded it (the one whose
        pedestal was subtracted); None when every module agrees with ``cell_ids``.
        :meth:`module_cells` gives one module's.
    """

    data: np.ndarray
    valid: np.ndarray
    units: str
    train_ids: np.ndarray
    pulse_ids: np.ndarray
    cell_ids: np.ndarray
    modules: Optional[tuple] = None
    origin: tuple = (0, 0)
    zeroed: bool = False
    payload: Mapping[str, Any] = field(default_factory=dict)
    fused: Optional[object] = None
    module_cell_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.train_ids)

    def module_axis_index(self, module: int) -> int:
        """Index along axis 1 of ``data`` that holds detector module ``module``."""
        if self.modules is None or module not in self.modules:
            raise KeyError(f"module {module} is not in this batch (modules {self.modules})")
        return self.modules.index(module)

    def module_cells(self, module: int) -> np.ndarray:
        """(N,) memory cells that detector module ``module`` recorded for these frames."""
        if self.module_cell_ids is None:
            return self.cell_ids
        return self.module_cell_ids[:, self.module_axis_index(module)]

    def derived(self, data: np.ndarray, valid: np.ndarray, units: Optional[str] = None,
                zeroed: bool = False, payload: Optional[Mapping[str, Any]] = None,
                fused: Optional[object] = None) -> "Frames":
        """New frames with the same ids but other pixel values (e.g. an ROI crop; no module axis)."""
        return replace(self, data=data, valid=valid, units=units or self.units, modules=None, origin=(0, 0),
                       zeroed=zeroed, payload=dict(payload or {}), fused=fused, module_cell_ids=None)

    def with_payload(self, payload: Mapping[str, Any]) -> "Frames":
        """The same pixels carrying ``payload`` (added to any they carry) for a function's children."""
        return replace(self, payload={**self.payload, **payload})

    def subset(self, selection: np.ndarray) -> "Frames":
        """The frames picked by a boolean mask or index array along axis 0."""
        return replace(
            self,
            data=None if self.data is None else self.data[selection],
            valid=None if self.valid is None else self.valid[selection],
            train_ids=self.train_ids[selection],
            pulse_ids=self.pulse_ids[selection],
            cell_ids=self.cell_ids[selection],
            module_cell_ids=None if self.module_cell_ids is None else self.module_cell_ids[selection],
            payload={},
            fused=None if self.fused is None else self.fused.subset(selection),
        )


def read_only(frames: Frames) -> Frames:
    """The same frames with read-only views of ``data`` and ``valid`` (no copy).

    Functions get read-only frames: the pixels are shared with the other functions of the
    detector and with the run sums, so writing into them would change what those see.
    """
    views = {}
    for key in ("data", "valid"):
        array = getattr(frames, key)
        if isinstance(array, np.ndarray) and array.flags.writeable:
            views[key] = array.view()
            views[key].flags.writeable = False
    return replace(frames, **views) if views else frames


def zero_invalid(data: np.ndarray, valid: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
    """A copy of ``data`` with invalid pixels (and, if given, pixels below ``threshold``) set to 0.

    NaN-safe (invalid NaNs become 0) and faster than ``np.where`` for large batches.
    """
    out = data.copy()
    np.copyto(out, 0, where=~valid)
    if threshold is not None:
        np.copyto(out, 0, where=out < threshold)
    return out
