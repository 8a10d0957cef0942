"""Checks for users' analysis functions, to call from their own tests.

:func:`check_function` makes the producer's own set-up check
(:func:`smalldata.plugin.contract.check_function`: parameters stored under their own names,
no writes into the input frames, declared outputs (``output_layout()``) matching what
``process`` returns, the same layout for every batch size) on a user's batch, and adds
batch independence: the outputs of a batch are the same whether it is processed whole or
split into smaller batches (which is what makes the output identical for any batch size
and number of MPI ranks). :func:`make_frames` and :func:`make_detector` build the inputs::

    from smalldata.testing import check_function, make_detector, make_frames

    def test_bright_fraction():
        frames = make_frames(np.random.default_rng(0).poisson(0.5, (8, 1) + DSSC.module_shape), modules=(3,))
        out = check_function(BrightFraction(module=3), frames, det=make_detector(modules=(3,)))
        assert out["bright_fraction"].shape == (8,)
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, Optional, Sequence

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.detectors.types import DetectorType
from smalldata.plugin.contract import check_function as check_setup
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, read_only
from smalldata.plugin.ragged import Ragged


def make_frames(data, valid=None, units: str = "photon", modules: Optional[Sequence[int]] = None,
                train_ids=None) -> Frames:
    """Read-only calibrated frames from arrays, as the producer hands them to functions.

    Parameters
    ----------
    data : array_like, (N, M, h, w) for detector frames or (N, h, w) for a crop
        Calibrated values in ``units``.
    valid : array_like of bool, optional
        True = good pixel; default all good.
    units : str
        ``"photon"`` or ``"ADU"``.
    modules : sequence of int, optional
        Module number of each entry along axis 1 (detector frames); None for a crop.
    train_ids : array_like, optional
        Train id of each frame; default 1..N.
    """
    data = np.asarray(data, dtype=np.float32)
    n = len(data)
    valid = np.ones(data.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    tids = np.arange(1, n + 1, dtype=np.uint64) if train_ids is None else np.asarray(train_ids, dtype=np.uint64)
    return read_only(Frames(data=data, valid=valid, units=units, train_ids=tids,
                            pulse_ids=np.zeros(n, dtype=np.uint64), cell_ids=np.zeros(n, dtype=np.uint16),
                            modules=None if modules is None else tuple(modules)))


def make_detector(modules: Sequence[int] = (0,), units: str = "photon", gain: Optional[float] = None,
                  noise: float = 0.1, shape: Optional[Sequence[int]] = None,
                  detector_type: DetectorType = DSSC) -> SimpleNamespace:
    """A stand-in for the detector object ``setFromDet(det)`` receives.

    It has ``type`` (``detector_type``: the DSSC by default, or e.g. a camera's
    :func:`~smalldata.detectors.camera.camera_type`), ``modules``, ``units``, ``gain``, ``mask``
    (all good), ``noise_in_units`` and ``cell_ids``; each module has the type's module shape,
    or ``shape`` (a crop) if given. Functions needing geometry or dark constants need a real
    :class:`~smalldata.calib.detobject.DetObject`.
    """
    m = len(modules)
    shape = tuple(detector_type.module_shape if shape is None else shape)
    return SimpleNamespace(type=detector_type, modules=tuple(modules), units=units, gain=gain,
                           mask=np.ones((m,) + shape, bool), noise_in_units=np.full((m,) + shape, noise, np.float32),
                           cell_ids=np.arange(1, dtype=np.uint16))


def _concatenate(parts):
    if isinstance(parts[0], Ragged):
        return Ragged.concatenate(parts)
    return np.concatenate([np.asarray(p) for p in parts])


def _same(whole, pieces, rtol: float) -> Optional[str]:
    """None when equal (NaN equal to NaN), else what differs."""
    if isinstance(whole, Ragged):
        if not np.array_equal(whole.counts, pieces.counts):
            return "the per-event counts differ"
        for name in whole.values:
            problem = _same(whole.values[name], pieces.values[name], rtol)
            if problem:
                return f"field {name!r}: {problem}"
        return None
    whole, pieces = np.asarray(whole), np.asarray(pieces)
    if whole.shape != pieces.shape:
        return f"shapes {whole.shape} and {pieces.shape}"
    if rtol == 0:
        same = np.array_equal(whole, pieces, equal_nan=whole.dtype.kind in "fc")
    else:
        same = np.allclose(whole, pieces, rtol=rtol, atol=0.0, equal_nan=True)
    if same:
        return None
    bad = np.argwhere(~np.isclose(whole, pieces, rtol=rtol, atol=0.0, equal_nan=True)
                      if whole.dtype.kind in "fc" else whole != pieces)
    return f"first difference at index {tuple(bad[0]) if len(bad) else '?'}"


def check_function(func: DetObjectFunc, frames: Frames, det=None, split_at: Optional[Sequence[int]] = None,
                   rtol: float = 0.0) -> Dict[str, object]:
    """Check ``func`` against the plug-in contract on ``frames``; returns its outputs for the whole batch.

    The producer's own set-up check (:func:`smalldata.plugin.contract.check_function`) runs on
    the whole batch and its pieces; then the outputs of the pieces, put together, must equal
    those of the whole batch.

    Parameters
    ----------
    func : DetObjectFunc
        The function (with its children, if any).
    frames : Frames
        A batch of at least two frames (see :func:`make_frames`).
    det : object, optional
        Passed to ``func.setup(det)`` first (see :func:`make_detector`); None: already set up.
    split_at : sequence of int, optional
        Frame indices where the batch is cut for the comparison; default every frame alone
        (up to 64 frames, else two halves).
    rtol : float
        Relative tolerance of the whole-versus-split comparison; 0 asks for identical
        bits, which is what the producer promises for its own functions.

    Raises
    ------
    smalldata.errors.FunctionError
        A contract violation (parameter not stored, in-place write, declared outputs wrong,
        keys, dtypes or trailing shapes that differ between the whole batch and a piece).
    AssertionError
        Output values that depend on the batch.
    """
    if det is not None:
        func.setup(det)
    frames = read_only(frames)
    n = len(frames)
    if n < 2:
        raise ValueError("check_function needs a batch of at least two frames to split")
    if split_at is None:
        split_at = range(1, n) if n <= 64 else [n // 2]
    bounds = [0] + sorted(int(i) for i in split_at if 0 < i < n) + [n]
    pieces = [read_only(frames.subset(np.arange(a, b))) for a, b in zip(bounds[:-1], bounds[1:])]
    check_setup(func, [frames] + pieces)
    whole = func.run(frames)
    parts = [func.run(piece) for piece in pieces]
    for key, value in whole.items():
        problem = _same(value, _concatenate([p[key] for p in parts]), rtol)
        if problem:
            raise AssertionError(f"{func.name}: output {key!r} depends on the batch ({problem} between the whole "
                                 f"batch and batches cut at {bounds[1:-1]}); a frame's result must use that "
                                 "frame only")
    return whole
