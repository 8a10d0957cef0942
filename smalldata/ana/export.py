"""The output's data in one call: an xarray Dataset (to_xarray) or a pandas DataFrame (to_dataframe).

Variables are the datasets, named by their path with ``/`` as ``_`` (``dssc/spot_sum`` is
``dssc_spot_sum``, its path in the attribute ``path``), with their ``units`` attribute. The
event axis is ``event`` with ``trainId``, ``pulseId``, ``cellId`` and ``pulse`` (the frame's
position in its train) as coordinates, or, with ``by="train"``, two axes ``trainId`` x ``pulse``
as the SCS ToolBox gives them. A per-train group's (a camera's) variables are on its own axis
``<cam>_trainId`` (its ``/<cam>/trainId``), or, with ``by="train"``, on the same ``trainId`` axis
as the events: the union of the events' and the groups' trains, NaN (False for flags) where one
side lacks a train. A function's other axes carry coordinates from ``/UserDataCfg``: q and phi bin
centres of an azimuthal function, module columns or rows of a projection of an ROI, lags of an
autocorrelation, the energy (or, uncalibrated, the column) of each point of a spectrum (hrixs,
viking).
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
    for axis in ("energy", "pixel"):  # a spectrum's axis (hrixs, viking): energy (eV) if calibrated, else column
        if len(extra) == 1 and isinstance(group.get(axis), h5py.Dataset) and group[axis].shape == extra:
            units = group[axis].attrs.get("units", "")
            units = units.decode() if isinstance(units, bytes) else str(units)
            coords[f"{base}_{axis}"] = (group[axis][()], {"units": units} if units else {})
            return [f"{base}_{axis}"], coords
    return [f"{var}_dim{k}" for k in range(1, len(shape))], {}


class ExportMixin:
    """to_xarray and to_dataframe of ``SmallDataAna``."""

    def _split_keys(self, keys: Optional[Sequence[str]], scalars: bool) -> Tuple[List[str], Dict[str, List[str]]]:
        """The per-event keys and, per per-train group, its keys (default: all; ``scalars``: one value per row)."""
        if keys is None:
            events = [k for k in self.event_keys() if k not in EVENT_IDS]
            trains = {g: [k for k in self.train_keys(g) if k != f"{g}/trainId"] for g in self.train_groups}
        else:
            events, trains = [], {}
            for key in keys:
                key = key.lstrip("/")
                if key not in self:
                    self[key]  # raises with a suggestion
                rows = self.info[key].get("rows", "event")
                if rows == "event" and key in self.event_keys():
                    events.append(key)
                elif rows != "event" and key in self.train_keys(rows) and key != f"{rows}/trainId":
                    trains.setdefault(rows, []).append(key)
                else:
                    raise SmallDataError(f"{key!r} has not one row per event or per train of its group (ragged, or "
                                         "a coordinate); read it with ana[key]")
        if scalars:
            bad = [k for k in events + sum(trains.values(), []) if len(self.info[k]["shape"]) != 1]
            if keys is None:
                events = [k for k in events if k not in bad]
                trains = {g: [k for k in ks if k not in bad] for g, ks in trains.items()}
            elif bad:
                raise SmallDataError(f"{bad[0]!r} is not a scalar dataset (one value per row); to_dataframe takes "
                                     "scalars, to_xarray any dataset")
        return events, trains

    def _variable(self, f: h5py.File, key: str, row_dim: str, functions, coords: dict):
        """The xarray Variable of ``key`` on ``row_dim`` (coordinates of its other axes added to ``coords``)."""
        import xarray as xr

        info = self.info[key]
        dims, extra = _axis_coords(key, info["shape"], functions)
        coords.update({d: xr.Variable(d, v, attrs=a) for d, (v, a) in extra.items()})
        attrs = {"path": key}
        if info["units"]:
            attrs["units"] = info["units"]
        values = self[key] if info.get("derived") else f[key][()]  # derived: ana.addVar
        return xr.Variable([row_dim] + dims, values, attrs=attrs)

    def to_xarray(self, keys: Optional[Sequence[str]] = None, by: str = "event"):
        """The output as one :class:`xarray.Dataset`.

        Parameters
        ----------
        keys : list of str, optional
            Dataset paths to include, per-event or per-train (default: every one of both).
        by : str
            ``"event"``: per-event variables on one axis ``event``, each per-train group's
            variables on its own axis ``<cam>_trainId``. ``"train"``: everything on one axis
            ``trainId``, per-event variables as ``trainId`` x ``pulse`` (the frame's position in its
            train), per-train ones as ``trainId``; an outer join: the axis holds every train of
            the events and of the groups, missing values NaN (integers become floats), False for
            flags.
        """
        import xarray as xr

        if by not in ("event", "train"):
            raise SmallDataError(f"by must be 'event' or 'train', got {by!r}")
        events, trains = self._split_keys(keys, scalars=False)
        data_vars, coords = {}, {}
        groups = {}
        with h5py.File(self.path, "r") as f:
            functions = _function_groups(f)
            for key in events:
                data_vars[key.replace("/", "_")] = self._variable(f, key, "event", functions, coords)
            for group, group_keys in trains.items():
                dim = f"{group}_trainId"
                variables, group_coords = {}, {dim: (dim, self[f"{group}/trainId"], {"path": f"{group}/trainId"})}
                for key in group_keys:
                    variables[key.replace("/", "_")] = self._variable(f, key, dim, functions, group_coords)
                groups[group] = (variables, group_coords)
        for key in EVENT_IDS:
            if key in self:
                coords[key] = ("event", self[key])
        coords["pulse"] = ("event", self.frame_index)
        attrs = {"run": self.run, "proposal": self.proposal, "source": str(self.path)}
        if by == "event":
            for variables, group_coords in groups.values():
                data_vars.update(variables)
                coords.update(group_coords)
            return xr.Dataset(data_vars, coords=coords, attrs=attrs)
        ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
        # frames a train does not have: NaN (integers become floats), False for flags
        flags = {name: False for name, var in ds.data_vars.items() if var.dtype == bool}
        ds = ds.set_index(event=["trainId", "pulse"]).unstack("event", fill_value=flags)
        parts = [ds]
        for group, (variables, group_coords) in groups.items():
            part = xr.Dataset(variables, coords=group_coords).rename({f"{group}_trainId": "trainId"})
            part["trainId"].attrs = {}
            flags.update({name: False for name, var in part.data_vars.items() if var.dtype == bool})
            parts.append(part)
        if len(parts) > 1:
            ds = xr.merge(parts, join="outer", compat="no_conflicts", fill_value=flags, combine_attrs="override")
            ds = ds.assign_coords(trainId=ds["trainId"].values.astype(np.uint64))
        return ds.transpose("trainId", "pulse", ...)

    def to_dataframe(self, keys: Optional[Sequence[str]] = None, per: str = "event"):
        """Scalars as a :class:`pandas.DataFrame`; columns are the dataset paths, units in ``df.attrs["units"]``.

        Parameters
        ----------
        keys : list of str, optional
            Scalar datasets, per-event or per-train (default: every one of both).
        per : str
            ``"event"``: one row per event, indexed by (trainId, pulse); a per-train value is
            repeated on every frame of its train, NaN where its group has no row for the train
            (trains without events are not in the frame). ``"train"``: one row per train,
            indexed by trainId: every train of the events and of the groups asked for (sorted);
            a per-event column is the mean over the train's frames (NaN values left out; NaN
            where the train has no frame), ``n_frames`` the train's number of events, a per-train
            column its group's row (NaN where the group has none).
        """
        import pandas as pd

        from smalldata.ana.trainrows import reduce_to_trains, row_lookup, take_rows

        if per not in ("event", "train"):
            raise SmallDataError(f"per must be 'event' or 'train', got {per!r}")
        events, trains = self._split_keys(keys, scalars=True)
        if per == "event":
            frame = self.to_xarray(events).to_dataframe().reset_index()
            frame = frame.rename(columns={k.replace("/", "_"): k for k in events}).set_index(["trainId", "pulse"])
            frame = frame.drop(columns=["event"], errors="ignore")
            for group_keys in trains.values():
                for key in group_keys:
                    frame[key] = self.on_events(key)
        else:
            tids = self["trainId"]
            ids = np.unique(np.concatenate([np.unique(tids)] + [self.train_ids(g) for g in trains]))
            columns = {key: reduce_to_trains(self[key], tids, ids, "mean") for key in events}
            columns["n_frames"] = reduce_to_trains(np.ones(len(tids)), tids, ids, "count").astype(np.int64)
            for group, group_keys in trains.items():
                rows, found = row_lookup(self.train_ids(group), ids, f"{group}/trainId")
                columns.update({key: take_rows(self[key], rows, found) for key in group_keys})
            frame = pd.DataFrame(columns, index=pd.Index(ids, name="trainId"))
        names = events + sum(trains.values(), [])
        frame.attrs["units"] = {k: self.units(k) for k in names}
        return frame
