"""Average (or maximum) calibrated image of selected frames, straight from the raw data.

What :meth:`SmallDataAna.AvImage <smalldata.ana.session.SmallDataAna.AvImage>` computes:
module by module, in batches of whole trains of at most ``batch_bytes`` of raw data (a
longer train is read on its own). The mean comes from sums of the raw values per pixel
and frames per memory cell (:mod:`smalldata.fused.rawmean`: one integer addition per
pixel and frame, the pedestal applied once at the end); the maximum (and the mean with
common-mode correction) from the fused kernel with only the run-sum consumer, as
:class:`~smalldata.sums.runsums.RunSums` sums (exact fixed point, 2**-12 of the data
unit per frame). Memory is one module's constants (the pedestal of each memory cell: 105 MB
for 400 cells; the noise is read only for common-mode correction) and one batch, whatever the
number of frames per train or of trains; a module's constants are read into the array of the
previous module's once its detector was given back (:class:`ModuleDetectors`).
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Sequence

import numpy as np

from smalldata.calib.darkfile import read_dark_file
from smalldata.errors import SmallDataError
from smalldata.fused.plan import FusedPlan
from smalldata.parallel.mpi import split_batches
from smalldata.sums.runsums import RunSums

log = logging.getLogger(__name__)

#: Raw data of one module read and summed at a time: 64 MiB (512 DSSC frames).
BATCH_BYTES = 64 * 2 ** 20
STATISTICS = ("mean", "max")


def frame_keys(train_ids: np.ndarray, pulse_ids: np.ndarray) -> np.ndarray:
    """One uint64 key per frame: train id and pulse id together."""
    return (np.asarray(train_ids, dtype=np.uint64) << np.uint64(16)) | np.asarray(pulse_ids, dtype=np.uint64)


class ModuleDetectors:
    """The ``make_detector`` of :func:`average_image`: each module's detector from the dark file ``path``.

    Each module's constants (the noise only if ``noise``) are read into the pedestal array of
    a module whose detector was given back (:meth:`release`), else into a new one; ``build
    (modules, dark_constants)`` makes the detector. One module's pedestal is 100 MB with 400
    memory cells; a new array for each module would cost its page faults every time (a
    third of reading it).
    """

    def __init__(self, path, build: Callable, noise: bool = False):
        from smalldata.io.buffers import BufferPool

        self.path = path
        self.build = build
        self.noise = noise
        self._pedestals = BufferPool(max_held=1)

    def __call__(self, modules: tuple):
        """The detector of ``modules``."""
        allocate = partial(self._pedestals.take, dtype=np.float32)
        return self.build(modules, read_dark_file(self.path, modules, noise=self.noise, allocate=allocate))

    def release(self, det) -> None:
        """Give back a detector from this maker: its pedestal array serves the next module's constants."""
        self._pedestals.release(det.pedestal_cell_major)


def module_detectors(path, build: Callable, noise: bool = False) -> ModuleDetectors:
    """A :class:`ModuleDetectors` for :func:`average_image` (the dark file ``path``, ``build``, ``noise``)."""
    return ModuleDetectors(path, build, noise)


def average_image(access, make_detector: Callable, modules: Sequence[int], train_ids: np.ndarray,
                  wanted_keys: np.ndarray, statistic: str = "mean", batch_bytes: int = BATCH_BYTES) -> np.ndarray:
    """Mean or maximum calibrated image of the wanted frames of ``train_ids``.

    Parameters
    ----------
    access : RunAccess
        The open run, for the detector's type (:attr:`RunAccess.detector_type`).
    make_detector : callable
        ``make_detector(modules) -> DetObject`` for a tuple of modules (called per module); a
        :class:`ModuleDetectors` gets each module's detector back once its image is done.
    modules : sequence of int
        Modules of the image, in the order of its first axis.
    train_ids : ndarray
        Trains to read (ascending).
    wanted_keys : ndarray of uint64
        :func:`frame_keys` of the frames to use.
    statistic : {"mean", "max"}
    batch_bytes : int
        Raw data of one module per batch (whole trains; at least one).

    Returns
    -------
    ndarray, (M, rows, columns) float32
        In the detector's units (module shape of the detector's type); NaN where a pixel was
        never valid in a used frame.
    """
    if statistic not in STATISTICS:
        raise SmallDataError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    wanted = np.unique(np.asarray(wanted_keys, dtype=np.uint64))
    det_type = access.detector_type  # the module shape and raw bytes per frame
    max_frames = max(1, batch_bytes // module_frame_bytes(det_type))
    image = np.empty((len(modules),) + tuple(det_type.module_shape), dtype=np.float32)
    for j, module in enumerate(modules):
        det = make_detector((module,))
        if statistic == "mean" and det.common_mode == "none":
            image[j] = _module_raw_mean(access, det, train_ids, wanted, max_frames)
        else:
            sums = _module_sums(access, det, train_ids, wanted, max_frames)
            image[j] = (sums.mean() if statistic == "mean" else sums.max())[0]
            del sums
        if isinstance(make_detector, ModuleDetectors):
            make_detector.release(det)  # its pedestal array serves the next module
        del det  # one module's constants in memory at a time, not two
    return image


def module_frame_bytes(detector_type) -> int:
    """Raw bytes of one module's frame of a :class:`~smalldata.detectors.types.DetectorType`."""
    return detector_type.frame_bytes // detector_type.n_modules


def _module_raw_mean(access, det, train_ids: np.ndarray, wanted: np.ndarray, max_frames: int) -> np.ndarray:
    """Mean image of the wanted frames of the one module of ``det`` from raw sums (:mod:`smalldata.fused.rawmean`)."""
    from smalldata.fused.rawmean import RawMean

    acc = RawMean(len(det.cell_ids), det.type.module_shape, det.type.saturation)
    for raw, keep in _module_batches(access, det, train_ids, wanted, max_frames):
        acc.add(raw.data[:, 0], det.cell_index(raw.cell_ids), keep, det.pedestal_cell_major)
        access.release(raw)  # its memory serves the next batch
    log.debug("module %d: %d frames", det.modules[0], acc.n_frames)
    return acc.mean(det.pedestal_cell_major, det.inverse_gain, det.mask)


def _module_sums(access, det, train_ids: np.ndarray, wanted: np.ndarray, max_frames: int) -> RunSums:
    """Run sums of the wanted frames of the one module of ``det``, in batches of whole trains."""
    # common mode needs each calibrated ASIC row before summing: the numpy calibration
    plan = FusedPlan(det, (), whole_modules=True) if det.common_mode == "none" else None
    sums = RunSums(det.mask.shape, units=det.units)
    for raw, keep in _module_batches(access, det, train_ids, wanted, max_frames):
        if plan is None:
            frames = det.calibrate(raw)
            sums.add(frames.data, valid=frames.valid, keep=keep)
            del frames
        else:
            sums.count_frames(np.count_nonzero(keep))
            plan.run(raw, sums=sums, sums_keep=keep)
        access.release(raw)  # its memory serves the next batch
    return sums


def _module_batches(access, det, train_ids: np.ndarray, wanted: np.ndarray, max_frames: int):
    """The raw batches of whole trains of the one module of ``det`` and which of their frames are wanted."""
    counts = access.frame_counts(det.modules)[np.searchsorted(access.train_ids, train_ids), 0]
    for start, stop in split_batches(counts, max_frames):
        if not counts[start:stop].any():
            continue
        raw = access.read_raw(tuple(det.modules), train_ids[start:stop])
        keep = np.isin(frame_keys(raw.train_ids, raw.pulse_ids), wanted) & raw.present[:, 0]
        yield raw, keep


def selected_trains(session, selection, max_trains: int):
    """The events picked by ``selection`` (None: all) and the first ``max_trains`` of their trains.

    Returns the file's ``trainId`` and ``pulseId``, the boolean selection and the train ids.
    """
    tids, pids = session["trainId"], session["pulseId"]
    sel = np.ones(len(tids), bool) if selection is None else np.asarray(selection, bool)
    if sel.shape != tids.shape:
        raise SmallDataError(f"selection has {sel.size} entries, the run {len(tids)} events")
    trains = np.unique(tids[sel])[:max_trains]
    if len(trains) == 0:
        raise SmallDataError("the selection holds no events")
    return tids, pids, sel, trains


def session_average(session, det: str, selection, max_trains: int, statistic: str, modules):
    """``AvImage``'s numbers for a :class:`~smalldata.ana.session.SmallDataAna` session.

    Returns ``(image, modules, units, n_frames)``, or None when the config subtracts
    intra-train darks (frames minus other frames: the session's plain path does that).
    """
    from smalldata.config.producer import ProducerConfig
    from smalldata.io.runaccess import RunAccess
    from smalldata.calib.configured import build_detobject, dark_path, needs_noise
    from smalldata.detectors.registry import detector_type

    config = ProducerConfig.from_file(session.config_path)
    if det not in config.detectors:
        raise SmallDataError(f"no detector {det!r} in {session.config_path}; detectors: {list(config.detectors)}")
    if (config.settings["pattern"] or {}).get("subtract_dark", "none") != "none":
        return None
    access = RunAccess.open(session.proposal, session.run, config.settings["data_root"],
                            detector_type=detector_type(config.detectors[det], f"detectors.{det}"))
    modules = tuple(sorted(modules)) if modules is not None else access.available_modules()
    tids, pids, sel, trains = selected_trains(session, selection, max_trains)
    units = []

    # the mean and the maximum need the pedestal, not the noise (half the constants' bytes)
    noise = needs_noise(config.detectors[det])

    def build(mods, dark):
        detobj = build_detobject(config, det, session.proposal, mods, access, dark=dark)
        units.append(detobj.units)
        return detobj

    make = module_detectors(dark_path(config, det, session.proposal), build, noise)

    image = average_image(access, make, modules, trains, frame_keys(tids[sel], pids[sel]), statistic)
    in_trains = np.isin(tids, trains) & sel
    return image, modules, units[0], int(np.count_nonzero(in_trains))
