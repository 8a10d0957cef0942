"""The per-event data in one call: an xarray Dataset (to_xarray) or a pandas DataFrame (to_dataframe).

Variables are the per-event datasets, named by their path with ``/`` as ``_`` (``dssc/spot_sum``
is ``dssc_spot_sum``, its path in the attribute ``path``), with their ``units`` attribute. The
event axis is ``event`` with ``trainId``, ``pulseId``, ``cellId`` and ``pulse`` (the frame's
position in its train) as coordinates, or, with ``by="train"``, two axes ``trainId`` x ``pulse``
as the SCS ToolBox gives them. A function's other axes carry coordinates from ``/UserDataCfg``:
q and phi bin centres of an azimuthal function, module columns or rows of a projection of an ROI,
lags of an autocorrelation.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from smalldata.errors import SmallDataError

EVENT_IDS = ("trainId", "pulseId", "cellId")


def _function_groups(f: h5py.File) -> Dict[str, Tuple[str, h5py.Group]]:
    """Output prefix (``det/func_child``) -> (function kind, its /UserDataCfg group)."""
    found: Dict[str, Tuple[str, h5py.Group]] = {}
    if "UserDataCfg" not in f:
        return found

    def walk(group: h5py.Group, prefix: str) -> None:
        for name, item in group.items():
            if isinstance(item, h5py.Group) and "type" in item.attrs:
                kind = str(item.attrs["type"]).split(":")[0].rsplit(".", 1)[-1]
                here = f"{prefix}_{name}" if not prefix.endswith("/") else f"{prefix}{name}"
                found[here] = (kind, item)
                walk(item, here)

    for det, group in f["UserDataCfg"].items():
        if isinstance(group, h5py.Group):
            walk(group, f"{det}/")
    return found


def _axis_coords(path: str, shape: tuple, functions: Dict[str, Tuple[str, h5py.Group]]):
    """Dimension names and coordinates ``{dim: (values, attrs)}`` of a dataset's non-event axes."""
    extra = shape[1:]
    var = path.replace("/", "_")
    prefixes = [p for p in functions if path.startswith(p + "_")]
    if not prefixes or not extra:
        return [f"{var}_dim{k}" for k in range(1, len(shape))], {}
    prefix = max(prefixes, key=len)
    kind, group = functions[prefix]
    base = prefix.replace("/", "_")
    coords = {}
    if kind == "azimuthal" and len(extra) == 2 and "q_centers" in group and "phi_centers" in group:
        dims = [f"{base}_phi", f"{base}_q"]
        coords[dims[0]] = (group["phi_centers"][()], {"units": "rad"})
        coords[dims[1]] = (group["q_centers"][()], {"units": "m^-1"})
        return dims, coords
    if kind == "projection" and len(extra) == 1:
        axis = int(group.attrs.get("axis", 0))
        parent = group.parent
        start = 0
        if "roi" in parent.attrs:
            roi = np.asarray(parent.attrs["roi"]).astype(int)
            start = int(roi[2] if axis == 0 else roi[0])
        dim = f"{base}_{'column' if axis == 0 else 'row'}"
        coords[dim] = (start + np.arange(extra[0]), {"units": "pixel"})
        return [dim], coords
    if kind == "autocorrelation" and "lags" in group:
        lags = group["lags"][()]
        names = ["lag_y", "lag_x"] if len(extra) == 2 else ["lag"]
        dims = [f"{base}_{n}" for n in names]
        for dim, size in zip(dims, extra):
            if size == len(lags):
                coords[dim] = (lags, {"units": "pixel"})
        return dims, coords
    return [f"{var}_dim{k}" for k in range(1, len(shape))], {}


class ExportMixin:
    """to_xarray and to_dataframe of ``SmallDataAna``."""

    def to_xarray(self, keys: Optional[Sequence[str]] = None, by: str = "event"):
        """Per-event data as an :class:`xarray.Dataset`.

        Parameters
        ----------
        keys : list of str, optional
            Dataset paths to include (default: every per-event dataset).
        by : str
            ``"event"``: one axis ``event``; ``"train"``: axes ``trainId`` x ``pulse`` (the frame's
            position in its train), missing frames filled with NaN (False for flags).
        """
        import xarray as xr

        if by not in ("event", "train"):
            raise SmallDataError(f"by must be 'event' or 'train', got {by!r}")
        wanted = [k for k in self.event_keys() if k not in EVENT_IDS] if keys is None else list(keys)
        for key in wanted:
            if key not in self:
                self[key]  # raises with a suggestion
            if key not in self.event_keys():
                raise SmallDataError(f"{key!r} is not a per-event dataset (ragged or not one row per event)")
        data_vars, coords = {}, {}
        with h5py.File(self.path, "r") as f:
            functions = _function_groups(f)
            for key in wanted:
                info = self.info[key]
                dims, extra = _axis_coords(key, info["shape"], functions)
                coords.update({d: xr.Variable(d, v, attrs=a) for d, (v, a) in extra.items()})
                attrs = {"path": key}
                if info["units"]:
                    attrs["units"] = info["units"]
                values = self[key] if info.get("derived") else f[key][()]  # derived: ana.addVar
                data_vars[key.replace("/", "_")] = xr.Variable(["event"] + dims, values, attrs=attrs)
        for key in EVENT_IDS:
            if key in self:
                coords[key] = ("event", self[key])
        coords["pulse"] = ("event", self.frame_index)
        ds = xr.Dataset(data_vars, coords=coords,
                        attrs={"run": self.run, "proposal": self.proposal, "source": str(self.path)})
        if by == "train":
            # frames a train does not have: NaN (integers become floats), False for flags
            flags = {name: False for name, var in ds.data_vars.items() if var.dtype == bool}
            ds = ds.set_index(event=["trainId", "pulse"]).unstack("event", fill_value=flags)
            ds = ds.transpose("trainId", "pulse", ...)
        return ds

    def to_dataframe(self, keys: Optional[Sequence[str]] = None):
        """Per-event scalars as a :class:`pandas.DataFrame` indexed by (trainId, pulse).

        Columns are the dataset paths (default: every per-event scalar dataset); units are in
        ``df.attrs["units"]``.
        """
        scalars: List[str] = [k for k in self.event_keys() if len(self.info[k]["shape"]) == 1
                              and k not in EVENT_IDS] if keys is None else list(keys)
        for key in scalars:
            if key not in self or len(self.info[key.lstrip("/")]["shape"]) != 1:
                raise SmallDataError(f"{key!r} is not a per-event scalar dataset")
        ds = self.to_xarray(scalars)
        frame = ds.to_dataframe().reset_index()
        frame = frame.rename(columns={k.replace("/", "_"): k for k in scalars}).set_index(["trainId", "pulse"])
        frame = frame.drop(columns=["event"], errors="ignore")
        frame.attrs["units"] = {k: self.units(k) for k in scalars}
        return frame
