"""The fused hot path of a detector: constants laid out once, one kernel pass per batch.

A :class:`FusedPlan` is built once per run from the detector and its function trees.
Built-in functions opt in with a ``fuse(plan)`` method that asks the plan for the
per-pixel accumulations they need (:meth:`FusedPlan.add_azimuthal`,
:meth:`FusedPlan.add_roi`) and returns True; :meth:`FusedPlan.run` then calibrates a
batch and feeds all of them, the run sums and the cube in one pass over the raw pixels
(:func:`smalldata.fused.kernels.fused_pass`). The :class:`~smalldata.plugin.frames.Frames`
it returns carry the results in ``frames.fused`` (a :class:`FusedBatch`, subset along
with the frames); a fused function's ``process`` takes its results from there with
:func:`fused_results`. Functions that are not fused (users' own, droplets, ...) get
calibrated float32 frames as always: the kernel writes them in the same pass, only
when such a function exists (otherwise ``frames.data`` is None).

``SMALLDATA_HOT_PATH=numpy`` in the environment switches the fused path off (the
numpy reference path: :meth:`DetObject.calibrate` and each function's own
``process``), for comparisons and benchmarks.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from smalldata.fused.segments import AzimuthalSegments, lay_out_segments
from smalldata.plugin.frames import Frames, RawBatch

log = logging.getLogger(__name__)

#: Environment variable choosing the hot path: ``fused`` (default) or ``numpy``.
HOT_PATH_ENV = "SMALLDATA_HOT_PATH"
HOT_PATHS = ("fused", "numpy")


def hot_path() -> str:
    """The hot path chosen by ``$SMALLDATA_HOT_PATH`` (``"fused"`` unless set to ``"numpy"``)."""
    value = os.environ.get(HOT_PATH_ENV, "fused").strip().lower() or "fused"
    if value not in HOT_PATHS:
        raise ValueError(f"{HOT_PATH_ENV}={value!r}; use one of {', '.join(HOT_PATHS)}")
    return value


def fused_results(frames: Frames, func) -> Optional[object]:
    """The kernel's results for ``func`` in this batch, or None when ``func`` takes the plain path."""
    batch = getattr(frames, "fused", None)
    return None if batch is None else batch.get(func)


def _empty(dtype, ndim: int) -> np.ndarray:
    return np.zeros((0,) * ndim, dtype=dtype)


@dataclass
class RoiResults:
    """One ROI's accumulations for the frames of a batch (see :meth:`FusedPlan.add_roi`).

    Attributes
    ----------
    row_sums, col_sums : (n, h) and (n, w) float64
        Sums of the thresholded valid values per ROI row and column.
    row_npix, col_npix : (n, h) and (n, w) int32
        Valid pixels per row and column.
    vmax : (n,) float32
        Largest thresholded valid value (-inf where none is valid).
    values, valid : (n, h, w) float32 and bool, or None
        The thresholded crop (0 where not valid) when a child needs the pixels.
    """

    row_sums: np.ndarray
    col_sums: np.ndarray
    row_npix: np.ndarray
    col_npix: np.ndarray
    vmax: np.ndarray
    values: Optional[np.ndarray]
    valid: Optional[np.ndarray]


@dataclass
class AzimuthalResults:
    """One azimuthal consumer's accumulations: float64 ``sums``, int64 ``counts`` and the weights
    ``weight_bad`` of binned pixels not valid in the frame, each (n, B)."""

    sums: np.ndarray
    counts: np.ndarray
    weight_bad: np.ndarray


class FusedBatch:
    """The kernel's results for a batch, seen through the frames ``rows`` of it.

    Parameters
    ----------
    plan : FusedPlan
    arrays : dict
        The kernel's output arrays of the whole batch.
    rows : ndarray or None
        Frames of the batch these results stand for (None: all).
    """

    def __init__(self, plan: "FusedPlan", arrays: Dict[str, np.ndarray], rows: Optional[np.ndarray] = None):
        self.plan = plan
        self.arrays = arrays
        self.rows = rows

    def subset(self, selection) -> "FusedBatch":
        """The results of the frames ``selection`` (boolean or index, along the current rows)."""
        n = len(self.arrays["cell"])
        base = np.arange(n) if self.rows is None else self.rows
        return FusedBatch(self.plan, self.arrays, base[selection])

    def _take(self, a: np.ndarray) -> np.ndarray:
        return a if self.rows is None else a[self.rows]

    def get(self, func) -> Optional[object]:
        """Results for ``func`` (:class:`RoiResults`, :class:`AzimuthalResults`, ...) or None."""
        binding = self.plan.bindings.get(id(func))
        if binding is None or binding[0] is not func:
            return None
        kind, index = binding[1], binding[2]
        a = self.arrays
        if kind == "azimuthal":
            n_bins = self.plan.az_n_bins[index]
            return AzimuthalResults(self._take(a["az_sum"][:, index, :n_bins]),
                                    self._take(a["az_cnt"][:, index, :n_bins]).astype(np.int64),
                                    self._take(a["az_wbad"][:, index, :n_bins]))
        if kind == "roi":
            return self._roi(index)
        if kind == "roi_child":  # a function computed from its parent ROI's sums (a projection)
            return self._roi(index)
        return None

    def _roi(self, i: int) -> RoiResults:
        a, (m, y0, y1, x0, x1) = self.arrays, self.plan.roi_def[i]
        h, w = y1 - y0, x1 - x0
        values = valid = None
        off = a["crop_off"][i]
        if off >= 0:
            n = len(a["cell"])
            values = self._take(a["crop_vals"][off:off + n * h * w].reshape(n, h, w))
            valid = self._take(a["crop_valid"][off:off + n * h * w].reshape(n, h, w))
        return RoiResults(self._take(a["roi_row"][:, i, :h]), self._take(a["roi_col"][:, i, :w]),
                          self._take(a["roi_rown"][:, i, :h]), self._take(a["roi_coln"][:, i, :w]),
                          self._take(a["roi_max"][:, i]), values, valid)


class FusedPlan:
    """Constants and consumers of one detector's fused pass.

    Parameters
    ----------
    det : DetObject
        The detector (pedestal, inverse gain, mask).
    functions : sequence of DetObjectFunc
        Top-level function trees; those with ``fuse(plan)`` returning True take the fused path.
    whole_modules : bool
        Read every pixel of every module (the run sums and the cube need them).
    """

    def __init__(self, det, functions: Sequence = (), whole_modules: bool = False):
        self.det = det
        n_mod = len(det.modules)
        self.shape = (n_mod,) + tuple(det.mask.shape[1:])
        self.bindings: Dict[int, Tuple[object, str, int]] = {}
        self._az_bins: List[np.ndarray] = []
        self._az_weights: List[np.ndarray] = []
        self.az_n_bins: List[int] = []
        self.roi_def: List[Tuple[int, int, int, int, int]] = []
        self._roi_thr: List[Tuple[float, float]] = []
        self._crop_needed: List[bool] = []
        # the inverse gain with the mask folded in: NaN marks a bad pixel
        inv = det.inverse_gain
        inv = np.ones(self.shape, np.float32) if inv is None else np.broadcast_to(inv, self.shape)
        self.invg = np.where(det.mask, inv, np.float32(np.nan)).astype(np.float32)
        self.ped = det.pedestal_cell_major  # (C, M, H, W) float32, cell-major
        self.plain: List = []  # top-level functions that need calibrated frames
        for func in functions:
            fuse = getattr(func, "fuse", None)
            if fuse is None or not fuse(self):
                self.plain.append(func)
        self.frame_box = self._frame_box(whole_modules)
        self._lay_out(whole_modules)
        log.info("%s: fused pass with %d azimuthal, %d ROI consumer(s)%s%s", det.name, len(self.az_n_bins),
                 len(self.roi_def), ", run sums/cube" if whole_modules else "",
                 f", calibrated frames for {[f.name for f in self.plain]}" if self.plain else "")

    # ------------------------------------------------------------------ consumers
    def bind(self, func, kind: str, index: int) -> None:
        """Hand the results of consumer ``index`` of ``kind`` to ``func`` (see :meth:`FusedBatch.get`)."""
        self.bindings[id(func)] = (func, kind, index)

    def add_azimuthal(self, func, bins: np.ndarray, weights: np.ndarray, n_bins: int) -> int:
        """Per-frame sums and counts of valid values in ``n_bins`` bins.

        ``bins`` (M, H, W) int, -1 = pixel not used; ``weights`` (M, H, W) float: summed in
        :attr:`AzimuthalResults.weight_bad` for binned pixels that are not valid in a frame.
        """
        self._az_bins.append(np.asarray(bins, dtype=np.int32).reshape(self.shape))
        self._az_weights.append(np.asarray(weights, dtype=np.float64).reshape(self.shape))
        self.az_n_bins.append(int(n_bins))
        self.bind(func, "azimuthal", len(self.az_n_bins) - 1)
        return len(self.az_n_bins) - 1

    def add_roi(self, func, module: int, box: Sequence[int], threshold: Optional[float] = None,
                threshold_max: Optional[float] = None) -> int:
        """Row and column sums, valid counts and maximum of a box of one module (see :class:`RoiResults`).

        Valid pixels above ``threshold_max`` become invalid; valid values below ``threshold``
        count as 0 (as :func:`~smalldata.plugin.frames.zero_invalid` does).
        """
        y0, y1, x0, x1 = (int(v) for v in box)
        self.roi_def.append((self.det.module_index(module), y0, y1, x0, x1))
        self._roi_thr.append((-np.inf if threshold is None else threshold,
                              np.inf if threshold_max is None else threshold_max))
        self._crop_needed.append(False)
        self.bind(func, "roi", len(self.roi_def) - 1)
        return len(self.roi_def) - 1

    def need_crop(self, index: int) -> None:
        """ROI ``index`` also writes its thresholded pixels (a child that is not fused reads them)."""
        self._crop_needed[index] = True

    def _frame_box(self, whole_modules: bool) -> Optional[tuple]:
        if not self.plain:
            return None
        boxes = [func.required_region() for func in self.plain]
        if any(box is None for box in boxes):
            return (0, self.shape[1], 0, self.shape[2])
        y0, y1, x0, x1 = np.array(boxes).T
        return int(y0.min()), int(y1.max()), int(x0.min()), int(x1.max())

    def _lay_out(self, whole_modules: bool) -> None:
        """Arrays for the kernel: what each module's rows need, bins, ROI definitions."""
        n_mod, height, width = self.shape
        box = np.zeros((n_mod, 4), dtype=np.int64)
        box[:, 0], box[:, 2] = height, width

        def widen(m, y0, y1, x0, x1):
            box[m] = (min(box[m, 0], y0), max(box[m, 1], y1), min(box[m, 2], x0), max(box[m, 3], x1))

        for m in range(n_mod):
            if whole_modules or self._az_bins:
                widen(m, 0, height, 0, width)
            if self.frame_box is not None:
                widen(m, *self.frame_box)
        for m, y0, y1, x0, x1 in self.roi_def:
            widen(m, y0, y1, x0, x1)
        empty = box[:, 0] >= box[:, 1]
        box[empty] = 0
        self.mod_box = box
        if self._az_bins:
            from smalldata.fused.kernels import ROWS

            bins = np.stack(self._az_bins)
            self.az_bins = np.where(bins < 0, np.int32(max(self.az_n_bins)), bins)  # the kernel's "not used"
            self.az_weight = np.ascontiguousarray(np.stack(self._az_weights))
            self.az_segments = lay_out_segments(self.az_bins, self.az_weight, self.az_n_bins,
                                                np.isfinite(self.invg), box, ROWS)
        else:
            self.az_bins, self.az_weight = _empty(np.int32, 4), _empty(np.float64, 4)
            self.az_segments = AzimuthalSegments.empty()
        self.roi_def_array = np.array(self.roi_def, dtype=np.int64).reshape(-1, 5)
        self.roi_thr = np.array(self._roi_thr, dtype=np.float32).reshape(-1, 2)

    # ------------------------------------------------------------------ running
    def load_kernel(self) -> None:
        """Load the compiled kernel now (from numba's cache on disk, or compile it) with a batch of
        no frames and the argument types of :meth:`run`.

        Called at set-up: otherwise every rank's first batch pays it (0.3-0.4 s where nothing
        compiled was loaded before), inside the event loop, on the critical path of the run.
        """
        n_mod, height, width = self.shape
        none = np.zeros(0, dtype=np.uint64)
        self.run(RawBatch(train_ids=none, pulse_ids=none, cell_ids=np.zeros(0, np.uint16),
                          frame_index=np.zeros(0, np.int64), modules=self.det.modules,
                          data=np.zeros((0, n_mod, height, width), np.uint16), present=np.zeros((0, n_mod), bool),
                          module_pulse_ids=np.zeros((0, n_mod), np.uint64)))

    def run(self, raw: RawBatch, sums=None, sums_keep: Optional[np.ndarray] = None, cube=None,
            cube_group: Optional[np.ndarray] = None, functions: bool = True) -> Frames:
        """Calibrate ``raw`` and feed every consumer in one pass.

        Parameters
        ----------
        raw : RawBatch
        sums : RunSums, optional
            Run sums to add the frames ``sums_keep`` (N,) bool to (pixels only: the caller
            counts the frames).
        cube : CubeAccumulator, optional
            Cube to add each frame to, in group ``cube_group`` (N,) int64 (-1: not added).
        functions : bool
            False: only the run sums and the cube (a second pass after vetoes).

        Returns
        -------
        Frames
            ``fused`` holds the results; ``data`` / ``valid`` are the calibrated frames of the
            plain functions' box (``origin``), or None when every function is fused.
        """
        from smalldata.fused.kernels import fused_pass

        det = self.det
        data, present = det.module_data(raw)
        data = np.ascontiguousarray(data)
        present = np.ascontiguousarray(present, dtype=bool)
        n = len(raw)
        if raw.module_cell_ids is None:
            cell = np.repeat(det.cell_index(raw.cell_ids)[:, None], self.shape[0], axis=1)
        else:  # the modules recorded different memory cells: each module takes its own cell's pedestal
            cell = det.cell_index(raw.select_modules(det.modules).module_cell_ids)
        cell = np.ascontiguousarray(cell, dtype=np.int64)
        if self.frame_box is not None and functions:
            fy0, fy1, fx0, fx1 = self.frame_box
            frames_out = np.empty((n, self.shape[0], fy1 - fy0, fx1 - fx0), dtype=np.float32)
            valid_out = np.empty(frames_out.shape, dtype=bool)
            frame_box = np.array(self.frame_box, dtype=np.int64)
        else:
            frames_out, valid_out, frame_box = _empty(np.float32, 4), _empty(np.bool_, 4), np.zeros(4, np.int64)
        n_az, n_bins = len(self.az_n_bins), max(self.az_n_bins, default=0) + 1  # + the "not used" bin
        n_roi = len(self.roi_def)
        az_bins, az_weight, roi_def, seg = self.az_bins, self.az_weight, self.roi_def_array, self.az_segments
        az_n_bins = np.array(self.az_n_bins, dtype=np.int64)
        if not functions:
            n_az = n_roi = 0
            az_bins, az_weight, roi_def = _empty(np.int32, 4), _empty(np.float64, 4), np.zeros((0, 5), np.int64)
            seg, az_n_bins = AzimuthalSegments.empty(), np.zeros(0, np.int64)
        _, height, width = self.shape
        crop_off = np.full(n_roi, -1, dtype=np.int64)
        total = 0
        for i, (_, y0, y1, x0, x1) in enumerate(self.roi_def[:n_roi]):
            if self._crop_needed[i]:
                crop_off[i] = total
                total += n * (y1 - y0) * (x1 - x0)
        arrays = {
            "cell": cell, "crop_off": crop_off,
            "az_sum": np.zeros((n, n_az, n_bins)), "az_cnt": np.zeros((n, n_az, n_bins), np.int32),
            "az_wbad": np.zeros((n, n_az, n_bins)),
            "roi_row": np.zeros((n, n_roi, height)), "roi_col": np.zeros((n, n_roi, width)),
            "roi_rown": np.zeros((n, n_roi, height), np.int32), "roi_coln": np.zeros((n, n_roi, width), np.int32),
            "roi_max": np.full((n, n_roi), -np.inf, np.float32),
            "crop_vals": np.empty(total, np.float32), "crop_valid": np.empty(total, bool),
        }
        rs = _sums_arrays(sums, sums_keep)
        cb = _cube_arrays(cube, cube_group)
        fixed = np.array([rs["scale"], cb["scale"], rs["limit"], cb["limit"]], dtype=np.float32)
        fused_pass(data, present, cell, self.ped, self.invg, self.mod_box,
                   frame_box, frames_out, valid_out,
                   az_bins, az_weight, az_n_bins, seg.block_seg, seg.seg_bin, seg.seg_ptr, seg.offset,
                   seg.static_count, seg.static_bad_weight, seg.module_weight,
                   arrays["az_sum"], arrays["az_cnt"], arrays["az_wbad"],
                   roi_def, self.roi_thr, arrays["roi_row"], arrays["roi_col"], arrays["roi_rown"],
                   arrays["roi_coln"], arrays["roi_max"], crop_off, arrays["crop_vals"], arrays["crop_valid"],
                   rs["keep"], rs["sum"], rs["cnt"], rs["max"], rs["above"], np.float32(rs["thr"]),
                   cb["group"], cb["sum"], cb["cnt"], cb["sq"], fixed, cb["bits"], cb["n_bad"],
                   np.int64(det.type.saturation))
        batch = FusedBatch(self, arrays)
        origin = (0, 0) if self.frame_box is None else (self.frame_box[0], self.frame_box[2])
        written = self.frame_box is not None and functions
        return Frames(data=frames_out if written else None, valid=valid_out if written else None,
                      units=det.units, train_ids=raw.train_ids, pulse_ids=raw.pulse_ids, cell_ids=raw.cell_ids,
                      modules=det.modules, origin=origin, fused=batch,
                      module_cell_ids=raw.select_modules(det.modules).module_cell_ids)


def _sums_arrays(sums, keep) -> Dict[str, object]:
    if sums is None or keep is None:
        return {"keep": _empty(np.bool_, 1), "sum": _empty(np.int64, 1), "cnt": _empty(np.int64, 1),
                "max": _empty(np.float32, 1), "above": _empty(np.int64, 1), "thr": 0.0, "scale": 1.0,
                "limit": 0.0}
    return dict(sums.kernel_arrays(), keep=np.ascontiguousarray(keep, dtype=bool))


def _cube_arrays(cube, group) -> Dict[str, object]:
    if cube is None or group is None:
        return {"group": _empty(np.int64, 1), "sum": _empty(np.int64, 2), "cnt": _empty(np.int32, 2),
                "sq": _empty(np.int64, 2), "scale": 1.0, "limit": 0.0, "bits": 0, "n_bad": np.zeros(1, np.int64)}
    return dict(cube.kernel_arrays(), group=np.ascontiguousarray(group, dtype=np.int64))
