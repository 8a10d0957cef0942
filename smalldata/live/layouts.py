"""The detector layouts a karabo-bridge message carries, decoded into one train.

Three raw layouts are understood:

- ``modules``: one source per DSSC module, ``SCS_DET_DSSC1M-1/DET/{m}CH0:xtdf`` with
  ``image.data`` (frames, 1, 128, 512), as the DAQ and ``karabo-bridge-serve-files`` send them;
- ``stacked``: the modules stacked into one source ``SCS_DET_DSSC1M-1/DET/APPEND`` with
  ``image.data`` (frames, 1, 16, 128, 512) (``karabo-bridge-serve-files
  --append-detector-modules``, extra-data's ``stack_detector_data``). That layout has no
  per-module presence: a module whose frames are all zero (extra-data's fill value for a
  module missing the train) is taken as absent, as a raw DSSC frame never reads 0 everywhere.
  The frames' ids are those of one module's source; when that module missed the train the
  source has none, and the ids of the last train with as many frames are used (the DSSC
  records the same pulses and cells at the same frame positions while its settings stay),
  counted as a loss (``stream_ids_from_previous_train``).
- ``online``: the facility's online pipeline, ``SCS_CDIDET_DSSC/CAL/APPEND_RAW`` with
  ``image.data`` in (modules, x, y, cells) order, (16, 512, 128, frames) (the order EXtra-foam
  reads from the bridge). Modules absent as for ``stacked``. Without ``image.cellId`` /
  ``image.pulseId`` in the message, a frame's memory cell and pulse are its position in the train
  (the DSSC writes its cells in order).

The same pipeline's corrected output ``SCS_CDIDET_DSSC/CAL/APPEND_CORRECTED`` (calibrated
float data, same order) is refused with one line: the producer calibrates raw data itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from smalldata.detectors.dssc import DSSC
from smalldata.errors import DataError

#: Detector part of the DSSC source names.
DSSC_DEVICE = "SCS_DET_DSSC1M-1"
#: The stacked source that ``karabo-bridge-serve-files --append-detector-modules`` sends.
STACKED_SOURCE = f"{DSSC_DEVICE}/DET/APPEND"
#: The online pipeline's stacked raw DSSC output, (modules, x, y, cells).
ONLINE_SOURCE = "SCS_CDIDET_DSSC/CAL/APPEND_RAW"
_MODULE_SOURCE = re.compile(r"^SCS_DET_DSSC1M-1/DET/(\d+)CH0:xtdf$")
#: Source-name parts of the facility's online-corrected detector output (calibration pipeline).
CORRECTED_MARKERS = ("/CORR", "CORRECTED", "APPEND_CORR")
LAYOUTS = ("auto", "modules", "stacked", "online")
#: These layouts are the DSSC's: its module shape and number of modules.
MODULE_SHAPE = tuple(DSSC.module_shape)
N_MODULES = DSSC.n_modules


@dataclass
class ModuleFrames:
    """One module's frames of one train: ``data`` (F, 128, 512) uint16, ``pulse_ids``/``cell_ids`` (F,)."""

    data: np.ndarray
    pulse_ids: np.ndarray
    cell_ids: np.ndarray


@dataclass
class LiveTrain:
    """One train of the stream.

    Attributes
    ----------
    train_id : int
    modules : dict
        Module number -> :class:`ModuleFrames` (modules absent from the train are missing).
    values : dict
        ``(source, key)`` -> value of every other source's keys (arrays or scalars).
    sources : frozenset
        Sources the message carried.
    ids_from_previous : bool
        The stacked source carried no pulse and cell ids; those of an earlier train are used.
    """

    train_id: int
    modules: Dict[int, ModuleFrames] = field(default_factory=dict)
    values: Dict[Tuple[str, str], object] = field(default_factory=dict)
    sources: frozenset = frozenset()
    #: the frames' ids are those of an earlier train (the stacked source carried none)
    ids_from_previous: bool = False


def message_train_id(data: Mapping, meta: Mapping) -> int:
    """The train id of a message: its metadata's ``timestamp.tid`` (the first source that has one)."""
    for source in data:
        tid = (meta.get(source) or {}).get("timestamp.tid")
        if tid is not None:
            return int(tid)
    for values in data.values():
        if "metadata" in values and "timestamp" in values["metadata"]:
            return int(values["metadata"]["timestamp"]["tid"])
    raise DataError("a karabo-bridge message carries no train id (timestamp.tid); is the sender a karabo bridge?")


def detect_layout(sources) -> Optional[str]:
    """``"modules"``, ``"stacked"``, ``"online"`` or None (no raw DSSC source) from a message's source names."""
    if STACKED_SOURCE in sources:
        return "stacked"
    if ONLINE_SOURCE in sources:
        return "online"
    if any(_MODULE_SOURCE.match(s) for s in sources):
        return "modules"
    return None


def remember_ids(train: LiveTrain, previous_ids: Dict[int, Tuple[np.ndarray, np.ndarray]]) -> None:
    """Record the frame ids of ``train`` (any module) in ``previous_ids`` by frames per train."""
    for frames in train.modules.values():
        previous_ids.setdefault(len(frames.pulse_ids), (frames.pulse_ids, frames.cell_ids))
        return


def corrected_sources(sources) -> list:
    """Sources that look like the online calibration pipeline's corrected DSSC output."""
    return sorted(s for s in sources if "DSSC" in s.upper() and any(m in s.upper() for m in CORRECTED_MARKERS))


def _ids(values: Mapping, key: str, n: int, dtype) -> np.ndarray:
    if key not in values:  # the online layout may carry none: the frame's position in the train
        return np.arange(n, dtype=dtype)
    ids = np.asarray(values[key]).reshape(-1).astype(dtype)
    if len(ids) != n:
        raise DataError(f"karabo-bridge message: {key} has {len(ids)} entries for {n} frames")
    return ids


def decode_train(data: Mapping, meta: Mapping, layout: str,
                 previous_ids: Optional[Dict[int, Tuple[np.ndarray, np.ndarray]]] = None) -> LiveTrain:
    """A :class:`LiveTrain` from one message (``karabo_bridge.Client.next()``) in ``layout``.

    Parameters
    ----------
    data, meta : mapping
        Per-source values and metadata of the message.
    layout : str
        ``"modules"``, ``"stacked"`` or ``"online"`` (see the module docstring).
    previous_ids : dict, optional
        Frames per train -> (pulse ids, cell ids) of the last stacked train with that many
        frames: used when a stacked source carries no ids, and updated.
    """
    train = LiveTrain(train_id=message_train_id(data, meta), sources=frozenset(data))
    for source, values in data.items():
        match = _MODULE_SOURCE.match(source)
        if layout == "modules" and match:
            # a module that missed the train may still send its header and trailer, without frames
            frames = np.asarray(values.get("image.data", np.zeros((0,) + MODULE_SHAPE, DSSC.raw_dtype)))
            n = frames.shape[0]
            if n:
                module = int(match.group(1))
                train.modules[module] = ModuleFrames(frames.reshape((n,) + MODULE_SHAPE),
                                                     _ids(values, "image.pulseId", n, np.uint64),
                                                     _ids(values, "image.cellId", n, np.uint16))
            continue
        stacked = (layout == "stacked" and source == STACKED_SOURCE) or (layout == "online" and
                                                                        source == ONLINE_SOURCE)
        if stacked:
            stack = np.asarray(values["image.data"])
            if layout == "online":  # (modules, x, y, cells) -> (cells, modules, y, x)
                if stack.ndim != 4 or stack.shape[:3] != (N_MODULES,) + MODULE_SHAPE[::-1]:
                    raise DataError(f"{source}: image.data of shape {stack.shape}, expected ({N_MODULES}, "
                                    f"{MODULE_SHAPE[1]}, {MODULE_SHAPE[0]}, frames); use --layout modules or "
                                    "stacked for other streams")
                stack = np.transpose(stack, (3, 0, 2, 1))
            n = stack.shape[0]
            stack = stack.reshape((n, N_MODULES) + MODULE_SHAPE)
            if stack.dtype != np.dtype(DSSC.raw_dtype):
                raise DataError(f"{source}: image.data is {stack.dtype}, not raw uint16 frames; the producer "
                                "calibrates raw frames itself: stream the raw DSSC data")
            if n:
                known = previous_ids if previous_ids is not None else {}
                if layout == "stacked" and "image.pulseId" not in values:
                    if n not in known:  # frames that cannot be labelled: the train has no detector frames
                        continue
                    pulse_ids, cell_ids = known[n]
                    train.ids_from_previous = True
                else:
                    pulse_ids = _ids(values, "image.pulseId", n, np.uint64)
                    cell_ids = _ids(values, "image.cellId", n, np.uint16)
                    known[n] = (pulse_ids, cell_ids)
                lit = stack.reshape(n, N_MODULES, -1).any(axis=2).any(axis=0)
                for module in np.flatnonzero(lit):
                    train.modules[int(module)] = ModuleFrames(np.ascontiguousarray(stack[:, module]), pulse_ids,
                                                              cell_ids)
            continue
        if match or source in (STACKED_SOURCE, ONLINE_SOURCE):
            continue
        for key, value in values.items():
            if key != "metadata":
                train.values[(source, key)] = value
    return train
