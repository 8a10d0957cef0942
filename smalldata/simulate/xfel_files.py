"""A low-level writer of European XFEL raw run files (data format version 1.0).

One :class:`AggregatorWriter` writes the sequence files of one aggregator
(``RAW-R0614-DSSC03-S00000.h5``, ``-S00001.h5``, ...) train by train. Data go into
extendable datasets as they come; the INDEX section (per source and index group:
``first``, ``count``; per file: ``trainId``, ``timestamp``, ``flag``) and the
METADATA section are written when a sequence file is closed.

Layout of a file::

    METADATA/dataFormatVersion, creationDate, updateDate, daqLibrary, karaboFramework,
             proposalNumber, runNumber, sequenceNumber, runType, sample
    METADATA/dataSources/{dataSourceId, root, deviceId}
    INDEX/trainId, INDEX/timestamp, INDEX/flag                          (trains,)
    INDEX/<device>/{first,count}                                       CONTROL sources
    INDEX/<device>:<channel>/<group>/{first,count}                     INSTRUMENT sources
    CONTROL/<device>/<key path>/{value,timestamp}                      one entry per train
    RUN/<device>/<key path>/{value,timestamp}                          value at run start; RUN-only
                                                                       keys too (classId, ...)
    INSTRUMENT/<device>:<channel>/<group>/<key path>                   (entries, ...)
    INSTRUMENT/<device>:<channel>/<group>/trainId                      (entries,)

A key ``"image.data"`` is stored at ``.../image/data``; its index group is the part
before the first dot.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import h5py
import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = "1.0"
_VLEN_BYTES = h5py.special_dtype(vlen=bytes)
#: Entries up to this size (bytes) are buffered in memory ...
BUFFER_ENTRY_BYTES = 16384
#: ... and written every this many appends (and when the file is closed).
BUFFER_TRAINS = 256


@dataclass
class KeySpec:
    """Type and layout of one key.

    Parameters
    ----------
    dtype : numpy dtype (str or type)
    shape : tuple
        Shape of one entry (without the leading entries axis).
    chunk_entries : int or None
        Entries per HDF5 chunk; None = about 64 kB per chunk.
    attrs : dict
        HDF5 attributes (Karabo style: ``unitSymbol``, ``metricPrefixSymbol``, ...).
    """

    dtype: object
    shape: Tuple[int, ...] = ()
    chunk_entries: Optional[int] = None
    attrs: Dict[str, object] = field(default_factory=dict)

    def chunks(self) -> Tuple[int, ...]:
        """HDF5 chunk shape."""
        n = self.chunk_entries
        if n is None:
            entry_bytes = np.dtype(self.dtype).itemsize * int(np.prod(self.shape, dtype=np.int64))
            n = int(max(1, min(4096, 65536 // max(entry_bytes, 1))))
        return (n,) + tuple(self.shape)


def run_file_name(run: int, aggregator: str, sequence: int) -> str:
    """``RAW-R{run:04d}-{aggregator}-S{sequence:05d}.h5``."""
    return f"RAW-R{run:04d}-{aggregator}-S{sequence:05d}.h5"


def karabo_units(symbol: str, name: str, prefix_symbol: str = "", prefix_name: str = "") -> Dict[str, str]:
    """Karabo unit attributes, as extra-data's ``KeyData.units`` reads them."""
    attrs = {"unitSymbol": symbol, "unitName": name}
    if prefix_symbol:
        attrs.update(metricPrefixSymbol=prefix_symbol, metricPrefixName=prefix_name)
    return attrs


class _SequenceFile:
    """One open sequence file; holds the in-memory INDEX until closed."""

    def __init__(self, path: Path, proposal: int, run: int, sequence: int,
                 instrument: Mapping[str, Mapping[str, KeySpec]],
                 control: Mapping[str, Mapping[str, KeySpec]],
                 run_values: Mapping[str, Mapping[str, object]],
                 run_only: Mapping[str, Mapping[str, object]]):
        self.path = path
        self.proposal, self.run, self.sequence = proposal, run, sequence
        self.file = h5py.File(path, "w")
        self.train_ids = []
        self.timestamps = []
        self.instrument = instrument
        self.control = control
        # (source, group) -> lists of first / count
        self.index: Dict[Tuple[str, str], Tuple[list, list]] = {}
        self.n_entries: Dict[Tuple[str, str], int] = {}
        self.datasets: Dict[Tuple[str, str], h5py.Dataset] = {}
        self._buffers: Dict[str, Tuple[h5py.Dataset, list]] = {}
        self._create_instrument()
        self._create_control(run_values)
        self._create_run_only(run_only)

    # ------------------------------------------------------------------ layout
    def _create_instrument(self) -> None:
        full = {}
        for source, keys in self.instrument.items():
            groups = {}
            for key, spec in keys.items():
                groups.setdefault(key.split(".", 1)[0], {})[key] = spec
            for group, gkeys in groups.items():
                if f"{group}.trainId" not in gkeys:
                    gkeys[f"{group}.trainId"] = KeySpec(np.uint64, ())
                for key, spec in gkeys.items():
                    path = f"INSTRUMENT/{source}/{key.replace('.', '/')}"
                    ds = self.file.create_dataset(path, shape=(0,) + tuple(spec.shape), dtype=spec.dtype,
                                                  maxshape=(None,) + tuple(spec.shape), chunks=spec.chunks())
                    ds.attrs.update(spec.attrs)
                    self.datasets[(source, key)] = ds
                self.index[(source, group)] = ([], [])
                self.n_entries[(source, group)] = 0
            full[source] = {k: s for g in groups.values() for k, s in g.items()}
        self.instrument = full

    def _create_control(self, run_values: Mapping[str, Mapping[str, object]]) -> None:
        self.file.create_group("RUN")
        for device, keys in self.control.items():
            self.file.create_group(f"CONTROL/{device}")
            for key, spec in keys.items():
                kpath = key.replace(".", "/")
                grp = self.file.create_group(f"CONTROL/{device}/{kpath}")
                grp.attrs.update(spec.attrs)
                for name, dtype, shape in (("value", spec.dtype, tuple(spec.shape)), ("timestamp", np.uint64, ())):
                    ds = grp.create_dataset(name, shape=(0,) + shape, dtype=dtype, maxshape=(None,) + shape,
                                            chunks=(256,) + shape)
                    self.datasets[(device, f"{key}.{name}")] = ds
                rgrp = self.file.create_group(f"RUN/{device}/{kpath}")
                rgrp.attrs.update(spec.attrs)
                value = np.asarray(run_values.get(device, {}).get(key, np.zeros(spec.shape, spec.dtype)),
                                   dtype=spec.dtype)
                rgrp.create_dataset("value", data=value[np.newaxis], maxshape=(None,) + tuple(spec.shape))
                rgrp.create_dataset("timestamp", data=np.zeros(1, np.uint64), maxshape=(None,))
            self.index[(device, "")] = ([], [])
            self.n_entries[(device, "")] = 0

    def _create_run_only(self, run_only: Mapping[str, Mapping[str, object]]) -> None:
        """RUN keys without CONTROL data (the device's ``classId``, a DOOCS ``location``, ...)."""
        for device, keys in run_only.items():
            if device not in self.control:
                raise KeyError(f"RUN-only keys of {device}: it is not a declared control source")
            for key, value in keys.items():
                grp = self.file.create_group(f"RUN/{device}/{key.replace('.', '/')}")
                if isinstance(value, str):
                    grp.create_dataset("value", data=[value.encode()], dtype=_VLEN_BYTES, maxshape=(None,))
                else:
                    value = np.asarray(value)
                    grp.create_dataset("value", data=value[np.newaxis], maxshape=(None,) + value.shape)
                grp.create_dataset("timestamp", data=np.zeros(1, np.uint64), maxshape=(None,))

    # ------------------------------------------------------------------ writing
    def _append(self, ds: h5py.Dataset, values: np.ndarray) -> None:
        """Append entries; small entries are buffered and written in blocks."""
        values = np.asarray(values, dtype=ds.dtype)
        if values[:1].nbytes > BUFFER_ENTRY_BYTES:
            n0 = ds.shape[0]
            ds.resize(n0 + len(values), axis=0)
            ds[n0:] = values
            return
        buf = self._buffers.setdefault(ds.name, (ds, []))[1]
        buf.append(values)
        if len(buf) >= BUFFER_TRAINS:
            self._flush(ds.name)

    def _flush(self, name: str) -> None:
        ds, buf = self._buffers.pop(name)
        if buf:
            values = np.concatenate(buf)
            n0 = ds.shape[0]
            ds.resize(n0 + len(values), axis=0)
            ds[n0:] = values

    def write_train(self, train_id: int, timestamp_ns: int,
                    instrument_data: Mapping[str, Mapping[str, np.ndarray]],
                    control_data: Mapping[str, Mapping[str, object]]) -> None:
        self.train_ids.append(int(train_id))
        self.timestamps.append(int(timestamp_ns))
        for source, keys in self.instrument.items():
            given = instrument_data.get(source, {})
            counts: Dict[str, int] = {}
            for key, values in given.items():
                if key not in keys:
                    raise KeyError(f"{source}: key {key} was not declared")
                group = key.split(".", 1)[0]
                if counts.setdefault(group, len(values)) != len(values):
                    raise ValueError(f"{source}: keys of group {group} have different entry counts")
            for (src, group), (firsts, cnts) in self.index.items():
                if src != source:
                    continue
                n = counts.get(group, 0)
                firsts.append(self.n_entries[(src, group)])
                cnts.append(n)
                self.n_entries[(src, group)] += n
                if n and f"{group}.trainId" not in given:
                    self._append(self.datasets[(source, f"{group}.trainId")], np.full(n, train_id, np.uint64))
            for key, values in given.items():
                self._append(self.datasets[(source, key)], np.asarray(values))
        for device, keys in self.control.items():
            firsts, cnts = self.index[(device, "")]
            given = control_data.get(device)
            firsts.append(self.n_entries[(device, "")])
            cnts.append(1 if given else 0)
            if not given:
                continue
            self.n_entries[(device, "")] += 1
            for key in keys:
                value = np.asarray(given[key])[np.newaxis]
                self._append(self.datasets[(device, f"{key}.value")], value)
                self._append(self.datasets[(device, f"{key}.timestamp")], np.array([timestamp_ns], np.uint64))

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        f = self.file
        for name in list(self._buffers):
            self._flush(name)
        n = len(self.train_ids)
        f.create_dataset("INDEX/trainId", data=np.array(self.train_ids, np.uint64), maxshape=(None,))
        f.create_dataset("INDEX/timestamp", data=np.array(self.timestamps, np.uint64), maxshape=(None,))
        f.create_dataset("INDEX/flag", data=np.ones(n, np.int32), maxshape=(None,))
        for (source, group), (firsts, counts) in self.index.items():
            base = f"INDEX/{source}/{group}" if group else f"INDEX/{source}"
            f.create_dataset(f"{base}/first", data=np.array(firsts, np.uint64), maxshape=(None,))
            f.create_dataset(f"{base}/count", data=np.array(counts, np.uint64), maxshape=(None,))
        self._write_metadata()
        f.close()
        log.debug("closed %s (%d trains)", self.path.name, n)

    def _write_metadata(self) -> None:
        f = self.file
        ids = [f"CONTROL/{d}" for d in self.control]
        ids += [f"INSTRUMENT/{s}/{g}" for (s, g) in self.index if s in self.instrument]
        grp = f.create_group("METADATA/dataSources")
        for name, values in (("dataSourceId", ids), ("root", [i.split("/", 1)[0] for i in ids]),
                             ("deviceId", [i.split("/", 1)[1] for i in ids])):
            grp.create_dataset(name, data=[v.encode() for v in values], dtype=_VLEN_BYTES, maxshape=(None,))
        now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ").encode()
        strings = {"dataFormatVersion": FORMAT_VERSION.encode(), "creationDate": now, "updateDate": now,
                   "daqLibrary": b"smalldata-simulate", "karaboFramework": b"simulated",
                   "runType": b"simulated", "sample": b"simulated sample"}
        for name, value in strings.items():
            f.create_dataset(f"METADATA/{name}", data=[value])
        for name, value in (("proposalNumber", self.proposal), ("runNumber", self.run),
                            ("sequenceNumber", self.sequence)):
            f.create_dataset(f"METADATA/{name}", data=np.array([value], np.uint32))


class AggregatorWriter:
    """Write one aggregator's sequence files of a run, train by train.

    Parameters
    ----------
    run_dir : path
        Directory the files go into (must exist).
    proposal, run : int
    aggregator : str
        Aggregator name in the file names, e.g. ``"DSSC03"`` or ``"DA01"``.
    sequence_trains : int
        Trains per sequence file.
    instrument : dict {source: {key: KeySpec}}
        Pulse- or train-resolved sources (``"DEVICE:channel"``), keys like ``"image.data"``.
        Each index group gets a ``<group>.trainId`` key unless one is declared.
    control : dict {device: {key: KeySpec}}
        Slow sources: one value per train, e.g. ``{"SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY":
        {"actualPosition": KeySpec(np.float64)}}``.
    run_values : dict {device: {key: value}}
        Values at the start of the run (RUN section) of the control keys.
    run_only : dict {device: {key: value}}
        RUN keys of control sources that have no CONTROL data, e.g. ``{"classId": "DoocsXGM"}``
        (extra-data's ``SourceData.device_class``); strings or numbers.
    """

    def __init__(self, run_dir: Path, proposal: int, run: int, aggregator: str, sequence_trains: int = 200,
                 instrument: Optional[Mapping[str, Mapping[str, KeySpec]]] = None,
                 control: Optional[Mapping[str, Mapping[str, KeySpec]]] = None,
                 run_values: Optional[Mapping[str, Mapping[str, object]]] = None,
                 run_only: Optional[Mapping[str, Mapping[str, object]]] = None):
        self.run_dir = Path(run_dir)
        self.proposal, self.run, self.aggregator = int(proposal), int(run), aggregator
        self.sequence_trains = int(sequence_trains)
        self.instrument = {s: dict(k) for s, k in (instrument or {}).items()}
        self.control = {d: dict(k) for d, k in (control or {}).items()}
        self.run_values = run_values or {}
        self.run_only = run_only or {}
        self.n_trains = 0
        self.paths = []
        self._current: Optional[_SequenceFile] = None

    def write_train(self, train_id: int, timestamp_ns: int,
                    instrument_data: Optional[Mapping[str, Mapping[str, np.ndarray]]] = None,
                    control_data: Optional[Mapping[str, Mapping[str, object]]] = None) -> None:
        """Append one train.

        Parameters
        ----------
        train_id : int
        timestamp_ns : int
            Train time, ns since the epoch (INDEX/timestamp and CONTROL timestamps).
        instrument_data : {source: {key: array (entries, ...)}}
            All keys of an index group must have the same number of entries; a source
            or group left out has count 0 in this train.
        control_data : {device: {key: value}}
            One value per key; a device left out has count 0.
        """
        if self.n_trains % self.sequence_trains == 0:
            self._close_current()
            seq = self.n_trains // self.sequence_trains
            path = self.run_dir / run_file_name(self.run, self.aggregator, seq)
            self._current = _SequenceFile(path, self.proposal, self.run, seq, self.instrument, self.control,
                                          self.run_values, self.run_only)
            self.paths.append(path)
        self._current.write_train(train_id, timestamp_ns, instrument_data or {}, control_data or {})
        self.n_trains += 1

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def close(self) -> None:
        """Finish the last sequence file."""
        self._close_current()

    def __enter__(self) -> "AggregatorWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
