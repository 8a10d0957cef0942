"""Cubes over two scan variables (e.g. delay x photon energy).

``cube.second: {scan: scan/photon_energy, unique: true}`` adds a second axis to a
detector's cube. The two axes' bins combine into one flat bin ``i * n2 + j``
(:class:`ProductBinning`), so :class:`~smalldata.sums.cube.CubeAccumulator` sums them
exactly as one axis; a frame without a bin on either axis has none. The output's
``Sums/<det>_cube`` then has ``bins_shape`` (n1, n2) and ``scan_names`` attributes and
``axis0_edges``, ``axis0_centres``, ``axis1_edges``, ``axis1_centres`` datasets;
:func:`read_cube2` gives the sums shaped ``(n1, n2, labels, ...)``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from smalldata.errors import ConfigError
from smalldata.sums.binning import ScanBinning


def axis_binning(cfg: Mapping[str, Any], point_specs: Mapping, access, run_train_ids: np.ndarray,
                 where: str) -> ScanBinning:
    """The fitted binning of one axis (``scan``, ``edges``/``width``/``unique``, ``origin``)."""
    scan = cfg["scan"]
    spec = point_specs.get(tuple(scan.split("/", 1))) if scan else None
    try:
        binning = ScanBinning(edges=cfg["edges"], width=cfg["width"], origin=cfg["origin"], unique=cfg["unique"],
                              name=scan.split("/")[-1] if scan else "scan", units=spec["units"] if spec else "")
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.path}", exc.message) from None
    if not binning.fitted:
        if spec is None or spec["per"] != "train":
            raise ConfigError(f"{where}.edges", f"binning {scan!r} by width or unique values needs a per-train "
                                                "point_data variable; give explicit edges")
        values = access.train_values(spec["source"], spec["key"], run_train_ids)
        binning.fit(values.reshape(len(run_train_ids), -1)[:, 0])
    return _delay_units(binning, scan)


class ProductBinning(ScanBinning):
    """Two binnings as one flat axis: bin ``i * n2 + j`` for bin ``i`` of the first, ``j`` of the second."""

    def __init__(self, first: ScanBinning, second: ScanBinning, first_scan: Optional[str], second_scan: str):
        super().__init__(unique=True, name=f"{first.name} x {second.name}")
        self.axes = (first, second)
        self.scans = (first_scan, second_scan)
        self.shape = (first.n_bins, second.n_bins)
        n = self.shape[0] * self.shape[1]
        self.mode = "product"
        self.centres = np.arange(n, dtype=np.float64)
        self.edges = np.arange(n + 1, dtype=np.float64) - 0.5
        self._fitted = True

    def assign_points(self, points: Mapping[str, np.ndarray], n_frames: int) -> np.ndarray:
        """Flat bin of each frame from the two variables in ``points`` (-1: no bin)."""
        a, b = self.axes
        first = a.assign(points[self.scans[0]] if self.scans[0] else None, n_frames=n_frames)
        second = b.assign(points[self.scans[1]], n_frames=n_frames)
        return np.where((first >= 0) & (second >= 0), first * self.shape[1] + second, -1).astype(np.int64)

    def write_axes(self, group) -> None:
        """Store both axes beside the cube."""
        group.attrs["bins_shape"] = np.array(self.shape, dtype=np.int64)
        group.attrs["scan_names"] = [s or "" for s in self.scans]
        for k, axis in enumerate(self.axes):
            group.create_dataset(f"axis{k}_edges", data=axis.edges).attrs["units"] = axis.units
            group.create_dataset(f"axis{k}_centres", data=axis.centres).attrs["units"] = axis.units


def _delay_units(binning: ScanBinning, scan: Optional[str]) -> ScanBinning:
    """Give a ``delay/*`` axis (no point_data spec) the unit of that output."""
    from smalldata.config.delay import DELAY_OUTPUTS

    if scan in DELAY_OUTPUTS and not binning.units:
        binning.units = DELAY_OUTPUTS[scan]
    return binning


def with_second_axis(binning: ScanBinning, cube_cfg: Mapping[str, Any], point_specs: Mapping, access,
                     run_train_ids: np.ndarray, where: str) -> ScanBinning:
    """``binning`` (a ``delay/*`` axis with its unit), or its product with the ``cube.second`` axis."""
    binning = _delay_units(binning, cube_cfg.get("scan"))
    second = cube_cfg.get("second")
    if not second:
        return binning
    return ProductBinning(binning, axis_binning(second, point_specs, access, run_train_ids, f"{where}.second"),
                          cube_cfg["scan"], second["scan"])


def assign_bins(binning: ScanBinning, scan: Optional[str], points: Mapping[str, np.ndarray], n_frames: int) -> np.ndarray:
    """Each frame's cube bin, for one axis or two."""
    if isinstance(binning, ProductBinning):
        return binning.assign_points(points, n_frames)
    return binning.assign(points[scan] if scan else None, n_frames=n_frames)


def read_cube2(group) -> Dict[str, object]:
    """A two-variable cube as arrays shaped ``(n1, n2, labels, ...)``.

    Returns
    -------
    dict
        ``sum``, ``pixel_count``, ``mean`` (NaN where no pixel was summed), ``count``
        (frames), ``xgm_sum``, ``labels``, ``scan_names``, ``axis0_centres``, ``axis0_edges``,
        ``axis1_centres``, ``axis1_edges``, ``axis0_units``, ``axis1_units``.
    """
    if "bins_shape" not in group.attrs:
        raise ConfigError("cube.second", f"{group.name} is a cube over one variable; add 'second: {{scan: ...}}' "
                                         "to the detector's cube")
    n1, n2 = (int(v) for v in group.attrs["bins_shape"])
    labels = [s.decode() if isinstance(s, bytes) else str(s) for s in group["labels"][()]]
    out: Dict[str, object] = {"labels": labels, "scan_names": [str(s) for s in group.attrs["scan_names"]]}
    for name in ("sum", "pixel_count", "count", "xgm_sum"):
        data = group[name][()]
        out[name] = data.reshape((n1, n2) + data.shape[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(out["pixel_count"] > 0, out["sum"] / out["pixel_count"], np.nan)
    for k in (0, 1):
        out[f"axis{k}_edges"] = group[f"axis{k}_edges"][()]
        out[f"axis{k}_centres"] = group[f"axis{k}_centres"][()]
        out[f"axis{k}_units"] = str(group[f"axis{k}_edges"].attrs.get("units", ""))
    return out
