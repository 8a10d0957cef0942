"""The MPI passes of ``smd_boz`` over one module of a run.

Every rank reads a contiguous block of trains (module only) in batches; sums are
integers (exact, so the result does not depend on the number of ranks); the only
per-frame array is one integer per frame (the intensity proxy), gathered in train order
(and kept by each rank for its own frames, which the second pass reads in the same order).

- :func:`mean_image_pass`: the dark-corrected mean image of all frames (finds the ROIs)
  and each frame's summed raw values (to bin the frames by intensity);
- :func:`roi_pass`: the raw-value histograms of each ROI (per pixel class) summed over the
  unsaturated frames of each intensity bin (for the non-linearity fit), kept apart for
  groups of trains (train id modulo the number of groups: independent subsets whose
  scatter gives honest errors), and per pixel the raw-value histogram over the
  unsaturated frames (mean images with any lookup table, for the flat field).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from smalldata.boz import ORDERS
from smalldata.boz.kernels import accumulate_histograms, frame_sums
from smalldata.boz.rois import crop
from smalldata.constants import DSSC_MODULE_SHAPE
from smalldata.errors import DataError
from smalldata.parallel import mpi

log = logging.getLogger(__name__)

N_VALUES = 512


class EtaLog:
    """Progress of rank 0's share with an estimated time to completion, as log lines."""

    def __init__(self, label: str, total: int, interval: float = 5.0):
        self.label, self.total, self.interval = label, max(int(total), 1), interval
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        """Log ``done`` of the total (at most every ``interval`` seconds, and at the end)."""
        now = time.monotonic()
        if now - self.last < self.interval and done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed * (self.total - done) / done if done else float("nan")
        log.info("%s: %d/%d trains (%.0f%%), %.1f s, ETA %.0f s", self.label, done, self.total,
                 100.0 * done / self.total, elapsed, eta)


def iter_batches(access, module: int, train_ids: np.ndarray, batch_frames: int = 512) -> Iterator:
    """RawBatches of ``module`` over ``train_ids``, about ``batch_frames`` frames each, with trains done so far.

    Each batch is given back to ``access`` when the next is asked for: use it inside the loop.
    """
    counts = access.module_frame_counts(module)
    pos = np.searchsorted(access.train_ids, train_ids)
    per_train = max(int(counts[pos].max()) if len(pos) else 1, 1)
    step = max(1, batch_frames // per_train)
    for start in range(0, len(train_ids), step):
        chunk = train_ids[start:start + step]
        batch = access.read_raw((module,), chunk)
        keep = batch.present[:, 0]
        yield batch, keep, start + len(chunk)
        access.release(batch)


def local_trains(access, module: int, comm, max_trains: Optional[int] = None) -> np.ndarray:
    """This rank's contiguous block of the trains where ``module`` has frames."""
    tids = access.train_ids[access.module_frame_counts(module) > 0]
    if max_trains is not None:
        tids = tids[:max_trains]
    a, b = mpi.block_range(len(tids), comm)
    return tids[a:b]


def frame_intensity(data: np.ndarray) -> np.ndarray:
    """(N,) int64 sum of each frame's raw values: the intensity proxy that bins the frames."""
    return data.reshape(len(data), -1).sum(axis=1, dtype=np.int64)


def mean_image_pass(access, module: int, pedestal: np.ndarray, cell_index, comm=None,
                    max_trains: Optional[int] = None, batch_frames: int = 512):
    """Dark-corrected mean image of all frames of ``module``, and every frame's intensity proxy.

    Parameters
    ----------
    access : RunAccess
    module : int
    pedestal : (C, 128, 512) float32
        Pedestal per memory cell of the dark.
    cell_index : callable
        Cell ids -> index along C (``DetObject.cell_index``).

    Returns
    -------
    (mean (128, 512) float64, n_frames int, intensity (F,) int64 of all ranks' frames,
    local (f,) int64: this rank's frames' intensities in the order it read them)
    """
    comm = mpi.get_comm(comm)
    trains = local_trains(access, module, comm, max_trains)
    raw_sum = np.zeros(DSSC_MODULE_SHAPE, np.int64)
    raw_flat = raw_sum.reshape(-1)
    cells = np.zeros(pedestal.shape[0], np.int64)
    intensity = []
    eta = EtaLog("mean image", len(trains))
    for batch, keep, done in iter_batches(access, module, trains, batch_frames):
        data = np.ascontiguousarray(batch.data[:, 0] if keep.all() else batch.data[keep, 0])
        values = np.zeros(len(data), np.int64)
        frame_sums(data.reshape(len(data), -1), raw_flat, values)
        intensity.append(values)
        cells += np.bincount(cell_index(batch.cell_ids[keep]), minlength=len(cells))
        eta.update(done)
    mpi.sum_reduce(raw_sum, comm, root=None)
    mpi.sum_reduce(cells, comm, root=None)
    local = np.concatenate(intensity) if intensity else np.zeros(0, np.int64)
    intensity = np.concatenate(comm.allgather(local)) if comm.Get_size() > 1 else local
    n = int(cells.sum())
    if n == 0:
        return np.zeros(DSSC_MODULE_SHAPE), 0, intensity, local
    ped_sum = np.tensordot(cells.astype(np.float64), pedestal.astype(np.float64), axes=1)
    return (raw_sum - ped_sum) / n, n, intensity, local


@dataclass
class RoiData:
    """What :func:`roi_pass` collects (integer sums: the same for any number of ranks).

    Attributes
    ----------
    group_hist : (G, B, 3, C, 512) int64
        Raw-value histograms of the good pixels of the n, 0, p ROIs per pixel class, summed over
        the unsaturated frames of each group of trains and intensity bin.
    group_ped_sums : (G, B, 3, C) float64
        Sum of those pixels' pedestals over the same frames (each frame's memory cell).
    group_counts : (G, B) int64
        Unsaturated frames per group and bin.
    n_frames, n_saturated : int
    pixel_hist : (3, P, 512) int32
        Raw-value histogram per good pixel over the unsaturated frames.
    pixel_ped : (3, P) float64
        Mean pedestal of those pixels over the unsaturated frames.
    n_unsaturated : int
    """

    group_hist: np.ndarray
    group_ped_sums: np.ndarray
    group_counts: np.ndarray
    n_frames: int
    n_saturated: int
    pixel_hist: np.ndarray
    pixel_ped: np.ndarray
    n_unsaturated: int

    @property
    def hist(self) -> np.ndarray:
        """(B, 3, C, 512) int64: :attr:`group_hist` summed over the groups."""
        return self.group_hist.sum(axis=0)

    @property
    def ped_sums(self) -> np.ndarray:
        """(B, 3, C) float64: :attr:`group_ped_sums` summed over the groups."""
        return self.group_ped_sums.sum(axis=0)

    @property
    def counts(self) -> np.ndarray:
        """(B,) int64: :attr:`group_counts` summed over the groups."""
        return self.group_counts.sum(axis=0)

    @property
    def n_groups(self) -> int:
        """Number of groups of trains."""
        return len(self.group_counts)


def roi_pixels(data: np.ndarray, rois: Mapping[str, Sequence[int]], common: np.ndarray) -> np.ndarray:
    """(N, 3, P) values of the good pixels (``common``, ROI-shaped) of the n, 0, p ROIs."""
    return np.stack([crop(data, rois, o)[:, common] for o in ORDERS], axis=1)


def roi_flat_indices(rois: Mapping[str, Sequence[int]], common: np.ndarray) -> np.ndarray:
    """(3, P) int64 flat module indices of the good pixels of the n, 0, p ROIs (order of :func:`roi_pixels`)."""
    ys, xs = np.nonzero(common)
    return np.stack([(rois[o][0] + ys) * DSSC_MODULE_SHAPE[1] + rois[o][2] + xs for o in ORDERS]).astype(np.int64)


def roi_pass(access, module: int, rois: Mapping[str, Sequence[int]], common: np.ndarray, pedestal: np.ndarray,
             cell_index, sat_level: int, edges: np.ndarray, comm=None, max_trains: Optional[int] = None,
             batch_frames: int = 512, classes: Optional[np.ndarray] = None, n_groups: int = 1,
             intensity: Optional[np.ndarray] = None) -> RoiData:
    """Binned ROI histograms of unsaturated frames, per-pixel histograms (see the module doc).

    ``edges`` (B + 1,) bin the frames by :func:`frame_intensity` (``intensity``: this rank's
    frames' values from :func:`mean_image_pass`, else computed again); ``classes`` (P,) assigns
    each good ROI pixel position to a class 0..C-1 (default one class); a frame of train ``t``
    goes to group ``t % n_groups``. Memory is bounded by the groups, bins and ROI pixels, not
    by the run length.
    """
    comm = mpi.get_comm(comm)
    trains = local_trains(access, module, comm, max_trains)
    n_pix = int(common.sum())
    n_bins = len(edges) - 1
    ped_roi = roi_pixels(pedestal.astype(np.float64), rois, common)  # (cells, 3, P)
    classes = np.zeros(n_pix, np.int64) if classes is None else np.asarray(classes, np.int64)
    n_cls = int(classes.max()) + 1 if n_pix else 1
    ped_cell_sums = np.stack([ped_roi[:, :, classes == c].sum(axis=2) for c in range(n_cls)], axis=2)
    pixel_hist = np.zeros((3, n_pix, N_VALUES), np.int32)
    n_groups = max(int(n_groups), 1)
    bin_hist = np.zeros((n_groups * n_bins, 3, n_cls, N_VALUES), np.int64)
    bin_cells = np.zeros((n_groups * n_bins, pedestal.shape[0]), np.int64)
    n_total = np.zeros(2, np.int64)  # frames, saturated frames
    pixels = roi_flat_indices(rois, common)
    done_frames = 0
    eta = EtaLog("ROI histograms", len(trains))
    for batch, keep, done in iter_batches(access, module, trains, batch_frames):
        data = np.ascontiguousarray(batch.data[:, 0]).reshape(len(batch), -1)
        rows = np.flatnonzero(keep)
        if intensity is None:
            values = frame_intensity(data[rows])
        else:
            values = intensity[done_frames:done_frames + len(rows)]
            if len(values) != len(rows):
                raise DataError(f"module {module} has more frames than in the first pass over the run; was it "
                                "rewritten meanwhile? Run smd_boz again")
        done_frames += len(rows)
        ci = cell_index(batch.cell_ids[rows])
        b = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1).astype(np.int64)
        b += (batch.train_ids[rows] % n_groups).astype(np.int64) * n_bins
        sat = np.zeros(len(rows), bool)
        accumulate_histograms(data, rows, pixels, int(sat_level), b, classes, pixel_hist, bin_hist, sat)
        n_total += (len(rows), int(sat.sum()))
        np.add.at(bin_cells, (b[~sat], ci[~sat]), 1)
        eta.update(done)
    for arr in (pixel_hist, bin_hist, bin_cells, n_total):
        mpi.sum_reduce(arr, comm, root=None)
    cell_counts = bin_cells.sum(axis=0)
    n_unsat = int(cell_counts.sum())
    pixel_ped = np.tensordot(cell_counts.astype(np.float64), ped_roi, axes=1) / max(n_unsat, 1)
    ped_sums = np.tensordot(bin_cells.astype(np.float64), ped_cell_sums, axes=1)
    return RoiData(group_hist=bin_hist.reshape(n_groups, n_bins, 3, n_cls, N_VALUES),
                   group_ped_sums=ped_sums.reshape(n_groups, n_bins, 3, n_cls),
                   group_counts=bin_cells.sum(axis=1).reshape(n_groups, n_bins), n_frames=int(n_total[0]), n_saturated=int(n_total[1]),
                   pixel_hist=pixel_hist, pixel_ped=pixel_ped, n_unsaturated=n_unsat)
