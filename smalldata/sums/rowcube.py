"""Per-train outputs of a camera (e.g. spectra) summed in bins of a scan variable.

The cube is made from the output's own rows once they are merged, in train order, so its sums
do not depend on the number of ranks; no second pass over the raw data is needed. For each
output key: ``/Sums/<det>_cube/<key>_sum`` (bins, ...), ``<key>_mean`` and ``count`` (rows per
bin), with the bins' ``centres`` and ``edges`` of the scan variable.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import h5py
import numpy as np

from smalldata.errors import ConfigError
from smalldata.output.conventions import RAGGED_ATTR
from smalldata.sums.binning import ScanBinning

log = logging.getLogger(__name__)


def row_keys(group: h5py.Group, keys: Optional[Sequence[str]], where: str) -> list:
    """The numeric per-row datasets of a detector's group to bin (``keys``: a chosen few)."""
    n = group["trainId"].shape[0]
    found = [name for name, ds in group.items() if isinstance(ds, h5py.Dataset) and name != "trainId"
             and ds.ndim and ds.shape[0] == n and ds.dtype.kind in "biuf" and RAGGED_ATTR not in ds.attrs]
    if keys is None:
        return found
    unknown = [k for k in keys if k not in found]
    if unknown:
        raise ConfigError(f"{where}.keys", f"no per-train output {unknown[0]!r}; choose among {sorted(found)}")
    return list(keys)


def write_row_cube(out: h5py.File, name: str, cube_cfg: Mapping[str, Any], scan_values: np.ndarray,
                   scan_units: str = "") -> None:
    """Bin the rows of ``/<name>`` by ``scan_values`` (one per row) into ``/Sums/<name>_cube``.

    Parameters
    ----------
    out : h5py.File
        The output, its rows merged.
    name : str
        Detector (group) name.
    cube_cfg : mapping
        The detector's validated ``cube`` settings (scan, edges, width, origin, unique, keys).
    scan_values : ndarray, (rows,)
        The scan variable of each row of ``/<name>`` (NaN: no value, in no bin).
    scan_units : str
        Unit of the scan variable.
    """
    where = f"detectors.{name}.cube"
    group = out[name]
    binning = ScanBinning(edges=cube_cfg["edges"], width=cube_cfg["width"], origin=cube_cfg["origin"],
                          unique=cube_cfg["unique"], name=cube_cfg["scan"].split("/")[-1], units=scan_units)
    if not binning.fitted:
        finite = scan_values[np.isfinite(scan_values)]
        if not len(finite):
            raise ConfigError(f"{where}.scan", f"{cube_cfg['scan']} has no value in the trains of {name}")
        binning.fit(finite)
    bins = binning.assign(scan_values)
    if "vetoed" in group:  # rows the detector's vetoes removed have no outputs
        bins[group["vetoed"][()].astype(bool)] = -1
    counts = np.bincount(bins[bins >= 0], minlength=binning.n_bins).astype(np.int64)
    cube = out.require_group("Sums").create_group(f"{name}_cube")
    cube.attrs.update({"scan": cube_cfg["scan"], "rows": f"/{name}", "mode": binning.mode})
    cube.create_dataset("count", data=counts).attrs["meaning"] = "rows (trains) in each bin"
    cube.create_dataset("centres", data=np.asarray(binning.centres, np.float64)).attrs["units"] = scan_units
    cube.create_dataset("edges", data=np.asarray(binning.edges, np.float64)).attrs["units"] = scan_units
    for key in row_keys(group, cube_cfg.get("keys"), where):
        values = group[key][()].astype(np.float64)
        sums = np.zeros((binning.n_bins,) + values.shape[1:])
        np.add.at(sums, bins[bins >= 0], np.nan_to_num(values[bins >= 0]))  # in row (train) order
        units = group[key].attrs.get("units", "")
        cube.create_dataset(f"{key}_sum", data=sums).attrs["units"] = units
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / counts.reshape((-1,) + (1,) * (sums.ndim - 1))
        cube.create_dataset(f"{key}_mean", data=mean).attrs["units"] = units
    log.info("%s: per-train outputs binned by %s into %d bins", name, cube_cfg["scan"], binning.n_bins)
