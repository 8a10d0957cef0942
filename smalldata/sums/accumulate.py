"""A detector's run accumulators: the binned cube and the run sums, from config to file."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from smalldata.errors import ConfigError
from smalldata.fixedformat import on_grid, scale
from smalldata.io.runaccess import RunAccess
from smalldata.plugin.frames import Frames
from smalldata.pulses.patterns import FramePattern
from smalldata.sums.binning import ScanBinning
from smalldata.sums.cube import CubeAccumulator
from smalldata.sums.cube2 import ProductBinning, assign_bins, with_second_axis
from smalldata.sums.runsums import RunSums

log = logging.getLogger(__name__)


class DetectorAccumulators:
    """Cube and run sums of one detector.

    Parameters
    ----------
    name : str
        Detector name (output prefix ``/Sums/<name>_...``).
    cube_cfg, sums_cfg : mapping or None
        Validated ``cube`` and ``sums`` settings of the detector.
    point_specs : mapping
        ``(group, name) -> spec`` of the point data (to fit the scan binning).
    image_shape : tuple
        ``(M, rows, columns)``.
    units : str
        Data units of the detector.
    pattern : FramePattern
        Labels of the cube's second axis.
    access : RunAccess
    run_train_ids : ndarray
        Trains of the run (binning by width or unique values is fitted on all of them).
    """

    def __init__(self, name: str, cube_cfg: Optional[Mapping[str, Any]], sums_cfg: Optional[Mapping[str, Any]],
                 point_specs: Mapping, image_shape: Tuple[int, ...], units: str, pattern: FramePattern,
                 access: RunAccess, run_train_ids: np.ndarray):
        self.name = name
        self.cube_cfg = dict(cube_cfg) if cube_cfg else None
        self.cube: Optional[CubeAccumulator] = None
        self.binning: Optional[ScanBinning] = None
        if self.cube_cfg is not None:
            self.binning = self._binning(point_specs, access, run_train_ids)
            self.cube = CubeAccumulator(self.binning.n_bins, pattern.unique_labels, image_shape,
                                        sum_squares=self.cube_cfg["sum_squares"], units=units,
                                        binning=self.binning)
        self.sums = RunSums(image_shape, threshold=sums_cfg["threshold"], units=units) if sums_cfg else None

    def _binning(self, point_specs: Mapping, access: RunAccess, run_train_ids: np.ndarray) -> ScanBinning:
        cfg, where = self.cube_cfg, f"detectors.{self.name}.cube"
        scan = cfg["scan"]
        spec = point_specs.get(tuple(scan.split("/", 1))) if scan else None  # delay/* paths have no spec
        try:
            binning = ScanBinning(edges=cfg["edges"], width=cfg["width"], origin=cfg["origin"], unique=cfg["unique"],
                                  name=scan.split("/")[-1] if scan else "scan",
                                  units=spec["units"] if spec else "")
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc.path}", exc.message) from None
        if not binning.fitted:
            if spec is None or spec["per"] != "train":
                raise ConfigError(f"{where}.edges", "binning by width or unique values of a per-pulse "
                                                    "variable needs explicit edges")
            values = access.train_values(spec["source"], spec["key"], run_train_ids)
            binning.fit(values.reshape(len(run_train_ids), -1)[:, 0])
        return with_second_axis(binning, cfg, point_specs, access, run_train_ids, where)

    def add(self, frames: Frames, label_id: np.ndarray, points: Mapping[str, np.ndarray], keep: np.ndarray) -> None:
        """Add the kept frames of a batch."""
        if self.cube is not None:
            scan = self.cube_cfg["scan"]
            bins = assign_bins(self.binning, scan, points, len(frames))
            xgm = points[self.cube_cfg["xgm"]] if self.cube_cfg["xgm"] else None
            # the run sums ride along in the cube's pass over the pixels (same result, less time)
            self.cube.add(frames.data, bins, label_id, xgm=xgm, valid=frames.valid, keep=keep, sums=self.sums)
        elif self.sums is not None:
            self.sums.add(frames.data, valid=frames.valid, keep=keep)

    def fused_inputs(self, n_frames: int, label_id: np.ndarray, points: Mapping[str, np.ndarray],
                     keep: np.ndarray) -> Dict[str, object]:
        """Count the kept frames of a batch; the arguments of :meth:`FusedPlan.run
        <smalldata.fused.plan.FusedPlan.run>` that add their pixels in the kernel's pass."""
        out: Dict[str, object] = {}
        n = n_frames
        if self.cube is not None:
            scan = self.cube_cfg["scan"]
            bins = assign_bins(self.binning, scan, points, n)
            xgm = points[self.cube_cfg["xgm"]] if self.cube_cfg["xgm"] else None
            out["cube"], out["cube_group"] = self.cube, self.cube.add_frames(bins, label_id, xgm, keep)
        if self.sums is not None:
            keep = np.asarray(keep, dtype=bool)
            self.sums.count_frames(np.count_nonzero(keep))
            out["sums"], out["sums_keep"] = self.sums, keep
        return out

    def reduce(self, comm) -> None:
        """Sum over the MPI ranks (collective; the totals end on rank 0)."""
        if self.cube is not None:
            self.cube = self.cube.reduce(comm)
        if self.sums is not None:
            self.sums = self.sums.reduce(comm)

    def write(self, sums_group, geometry=None, modules: Tuple[int, ...] = ()) -> None:
        """Write ``<name>_cube/`` and ``<name>_mean`` etc. into the output's ``/Sums`` (rank 0)."""
        if self.cube is not None:
            group = sums_group.create_group(f"{self.name}_cube")
            self.cube.write(group, compression="gzip", sum_compression="gzip")
            group.attrs["modules"] = np.asarray(modules)
            if isinstance(self.binning, ProductBinning):
                self.binning.write_axes(group)
            if self.cube_cfg["assembled"] and geometry is not None:
                mean = self.cube.mean()
                full = np.full(mean.shape[:2] + (geometry.n_modules,) + mean.shape[3:], np.nan, dtype=np.float32)
                full[:, :, list(modules)] = mean
                assembled, centre = geometry.position_modules(full)
                # at the sums' fixed-point resolution, at which every frame was summed: the random digits
                # below it do not compress (34 MB instead of 15 MB for the demo); sum / pixel_count is exact
                rounded = on_grid(assembled, self.cube.scale_bits).astype(np.float32)
                ds = group.create_dataset("mean_assembled", data=rounded, compression="gzip", shuffle=True,
                                          chunks=(1, 1) + rounded.shape[2:])
                ds.attrs["units"] = self.cube.units
                ds.attrs["resolution"] = 1.0 / scale(self.cube.scale_bits)
                ds.attrs["centre_pixel"] = np.asarray(centre)
        if self.sums is not None:
            self.sums.write(sums_group, self.name)

    def describe(self) -> Dict[str, Any]:
        """Settings for UserDataCfg."""
        out: Dict[str, Any] = {}
        if self.cube_cfg is not None:
            out["cube"] = dict(self.cube_cfg)
        if self.sums is not None:
            out["sums"] = {"threshold": self.sums.threshold}
        return out
