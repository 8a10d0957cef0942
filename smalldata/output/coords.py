"""Coordinates in every group of the output, so that netCDF readers need nothing but the file.

``xarray.open_dataset(path, group="dssc", engine="h5netcdf")`` reads one group and its own
variables only: a coordinate kept in the root group is not seen there. So each group that holds
per-event datasets gets its own copies of the frame coordinates:

- ``<group>/trainId``: an HDF5 dimension scale (netCDF-4 conventions), the first axis of every
  per-event dataset of the group is attached to it, so ``.sel(trainId=t)`` picks a train's frames;
- ``<group>/pulseId``: along the same axis, named in each dataset's ``coordinates`` attribute (the
  CF convention xarray decodes into a non-index coordinate).

The root's per-event datasets keep ``/trainId`` as their scale and name ``pulseId`` the same way.
An azimuthal function's profiles get their bin centres as coordinates, ``<group>/<func>_q`` (1/m)
and ``<group>/<func>_phi`` (rad), from ``/UserDataCfg/<det>/<func>/q_centers`` and ``phi_centers``.
Ragged value arrays (droplet lists) get a dimension without values, ``entry``, for their axis.
Only coordinates and attributes are added: the values of the per-event datasets do not change.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterator, List, Optional, Tuple

import h5py
import numpy as np

from smalldata.output.conventions import NETCDF_DIMENSION_ONLY, RAGGED_ATTR

log = logging.getLogger(__name__)

#: frame coordinates copied into every group of per-event datasets
FRAME_COORDINATES = ("trainId", "pulseId")
#: top-level groups that hold no per-event data
NOT_EVENT_GROUPS = ("UserDataCfg", "meta", "Sums")
#: units of the q coordinate (momentum transfer)
Q_UNITS = "1/m"
#: dimension of the values of a ragged list (one entry per droplet or photon)
RAGGED_DIMENSION = "entry"
#: attribute of a group whose datasets have rows of their own (a per-train detector's), value "train"
OWN_ROWS_ATTR = "rows"


def has_own_rows(group: h5py.Group) -> bool:
    """Whether ``group`` holds a per-train detector's rows (its own ``trainId``), not the top level's."""
    return group.attrs.get(OWN_ROWS_ATTR) in ("train", b"train")


def _is_scale(ds: h5py.Dataset) -> bool:
    cls = ds.attrs.get("CLASS", b"")
    return (cls.decode() if isinstance(cls, bytes) else str(cls)) == "DIMENSION_SCALE"


def _event_groups(group: h5py.Group, n_rows: int) -> Iterator[Tuple[h5py.Group, List[h5py.Dataset]]]:
    """Every group below ``group`` with its per-event datasets (``n_rows`` rows, not ragged values)."""
    events: List[h5py.Dataset] = []
    for name, item in group.items():
        if isinstance(item, h5py.Group):
            if group.name == "/" and (name in NOT_EVENT_GROUPS or has_own_rows(item)):
                continue
            yield from _event_groups(item, n_rows)
        elif item.ndim and item.shape[0] == n_rows and RAGGED_ATTR not in item.attrs and not _is_scale(item):
            events.append(item)
    if events and group.name != "/":
        yield group, events


def _copy(group: h5py.Group, name: str, values: np.ndarray) -> h5py.Dataset:
    """A compressed copy of a frame coordinate (sorted train ids shrink a hundredfold)."""
    chunks = (max(1, min(len(values), 1 << 16)),) if len(values) else None
    kwargs = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if len(values) else {}
    return group.create_dataset(name, data=values, chunks=chunks, **kwargs)


def _dimension_only(group: h5py.Group, name: str, length: int) -> h5py.Dataset:
    """A netCDF dimension without values (an axis label), created in ``group`` once."""
    if name not in group:
        group.create_dataset(name, shape=(length,), dtype="f4").make_scale(f"{NETCDF_DIMENSION_ONLY}{length:10d}")
    return group[name]


def label_further_axes(root: h5py.Group, ds: h5py.Dataset) -> None:
    """Each axis of ``ds`` after the first that has no label yet gets the dimension without values
    ``<root>/dim<axis>_<length>`` (netCDF readers need every axis labelled once one is)."""
    for axis, length in enumerate(ds.shape[1:], start=1):
        if not len(ds.dims[axis]):
            ds.dims[axis].attach_scale(_dimension_only(root, f"dim{axis}_{length}", length))


def label_frame_coordinates(out: h5py.File) -> None:
    """Give every group of per-event datasets its own ``trainId`` scale and ``pulseId`` coordinate."""
    if "trainId" not in out or "pulseId" not in out:
        return
    train_ids, pulse_ids = out["trainId"][()], out["pulseId"][()]
    root_scale = out["trainId"]
    for name in ("cellId",):
        if name in out and out[name].shape == train_ids.shape:
            out[name].attrs["coordinates"] = "pulseId"
    for group, events in list(_event_groups(out, len(train_ids))):
        taken = [c for c in FRAME_COORDINATES if c in group]
        if taken:  # set-up refuses such names (smalldata.output.names); a file written otherwise keeps its data
            log.warning("group %s has its own %s: it keeps /trainId as its axis", group.name, taken)
            continue
        scale = _copy(group, "trainId", train_ids)
        scale.make_scale("trainId")
        scale.attrs["meaning"] = "train of each event (a copy of /trainId, the coordinate of this group)"
        pulse = _copy(group, "pulseId", pulse_ids)
        pulse.attrs["meaning"] = "pulse id of each event (a copy of /pulseId)"
        pulse.dims[0].attach_scale(scale)
        for ds in events:
            if root_scale in [s for s in ds.dims[0].values()]:
                ds.dims[0].detach_scale(root_scale)
            ds.dims[0].attach_scale(scale)
            label_further_axes(out, ds)
            ds.attrs["coordinates"] = "pulseId"
    label_train_rows(out)
    _label_ragged_values(out)


def label_train_rows(out: h5py.File) -> None:
    """In each group with rows of its own, ``<group>/trainId`` is the first axis of its datasets."""
    for group in [item for item in out.values() if isinstance(item, h5py.Group) and has_own_rows(item)]:
        if "trainId" not in group:
            continue
        scale = group["trainId"]
        if not _is_scale(scale):
            scale.make_scale("trainId")
        scale.attrs["meaning"] = "train of each row of this per-train detector"
        datasets: List[h5py.Dataset] = []
        group.visititems(lambda name, item: datasets.append(item) if isinstance(item, h5py.Dataset) and item.ndim
                         and item.shape[0] == scale.shape[0] and RAGGED_ATTR not in item.attrs
                         and not _is_scale(item) else None)
        for ds in datasets:
            if not len(ds.dims[0]):
                ds.dims[0].attach_scale(scale)
            label_further_axes(out, ds)


def _label_ragged_values(out: h5py.File) -> None:
    """Ragged value arrays get the dimension ``entry`` (and value-less further axes) in their group."""
    ragged: List[h5py.Dataset] = []
    out.visititems(lambda name, item: ragged.append(item) if isinstance(item, h5py.Dataset)
                   and RAGGED_ATTR in item.attrs and item.ndim and not len(item.dims[0]) else None)
    for item in ragged:  # created after the visit: HDF5 refuses new objects while it iterates
        group = item.parent
        item.dims[0].attach_scale(_dimension_only(group, RAGGED_DIMENSION, item.shape[0]))
        for axis, length in enumerate(item.shape[1:], start=1):
            item.dims[axis].attach_scale(_dimension_only(group, f"{RAGGED_DIMENSION}_dim{axis}_{length}", length))


def _azimuthal_functions(out: h5py.File) -> Dict[str, h5py.Group]:
    """Output prefix (``det/func`` or ``det/func_child``) -> /UserDataCfg group of each azimuthal function."""
    found: Dict[str, h5py.Group] = {}
    if "UserDataCfg" not in out:
        return found

    def walk(group: h5py.Group, prefix: Optional[str], det: str) -> None:
        for name, item in group.items():
            if isinstance(item, h5py.Group) and "type" in item.attrs:
                kind = str(item.attrs["type"]).split(":")[0].rsplit(".", 1)[-1]
                here = name if prefix is None else f"{prefix}_{name}"
                if kind == "azimuthal" and "q_centers" in item and "phi_centers" in item:
                    found[f"{det}/{here}"] = item
                walk(item, here, det)

    for det, group in out["UserDataCfg"].items():
        if isinstance(group, h5py.Group) and det in out and isinstance(out[det], h5py.Group):
            walk(group, None, det)
    return found


def label_bin_coordinates(out: h5py.File) -> None:
    """Attach q (1/m) and phi (rad) bin centres to the axes of every azimuthal profile."""
    for prefix, cfg in _azimuthal_functions(out).items():
        det, func = prefix.split("/", 1)
        group = out[det]
        q, phi = cfg["q_centers"][()], cfg["phi_centers"][()]
        profiles = [ds for name, ds in group.items() if isinstance(ds, h5py.Dataset) and name.startswith(func + "_")
                    and ds.shape[1:] == (len(phi), len(q)) and RAGGED_ATTR not in ds.attrs]
        if not profiles:
            continue
        names = {"q": f"{func}_q", "phi": f"{func}_phi"}
        if any(name in group for name in names.values()):
            log.warning("%s: %s exist already; its profiles keep axes without coordinates", prefix, list(names.values()))
            continue
        scales = {}
        for axis, values, unit, meaning in (("q", q, Q_UNITS, "momentum transfer at the bin centre"),
                                           ("phi", phi, "rad", "azimuth at the bin centre")):
            ds = group.create_dataset(names[axis], data=np.asarray(values, np.float64))
            ds.make_scale(names[axis])
            ds.attrs.update({"units": unit, "long_name": meaning,
                             "source": f"{cfg.name}/{axis}_centers"})
            scales[axis] = ds
        for ds in profiles:
            for axis, name in ((1, "phi"), (2, "q")):
                for old in list(ds.dims[axis].values()):
                    ds.dims[axis].detach_scale(old)
                ds.dims[axis].attach_scale(scales[name])


def label_coordinates(out: h5py.File) -> None:
    """Every coordinate this module adds (see the module docstring); run once, on a complete file."""
    label_bin_coordinates(out)
    label_frame_coordinates(out)
