"""Derived variables and named filters kept between sessions (smalldata_tools' ``addVar``).

``ana.addVar(name, values)`` adds a per-event array that the session then reads like a
dataset of the output (``ana[name]``, cuts, ``binned``, ...). Derived variables and the
named cuts (``addCut``) are written at once to a file beside the output,
``r0614.h5`` -> ``r0614_derived.h5`` (or ``derived_path``), and the next session on the
same output loads them again. The file holds ``/trainId`` and ``/pulseId`` of the events
(checked on loading: an output made again with other events refuses the file),
``/vars/<name>`` with ``units`` attributes, and ``/filters`` with each cut as JSON.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional

import h5py
import numpy as np

from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)
DERIVED_SUFFIX = "_derived.h5"


class DerivedMixin:
    """addVar, removeVar, saveFilters and their persistence for ``SmallDataAna``."""

    derived_path: Optional[Path] = None

    def _derived_file(self) -> Path:
        return Path(self.derived_path) if self.derived_path else self.path.with_name(self.path.stem + DERIVED_SUFFIX)

    def _load_derived(self, path: Optional[Path] = None) -> None:
        """Load the derived variables and filters saved by an earlier session (if any)."""
        if path is not None:
            self.derived_path = Path(path)
        self.derived: Dict[str, str] = {}
        file = self._derived_file()
        if not file.is_file():
            return
        with h5py.File(file, "r") as f:
            tids, pids = f["trainId"][()], f["pulseId"][()]
            if not (np.array_equal(tids, self["trainId"]) and np.array_equal(pids, self["pulseId"])):
                raise SmallDataError(f"{file} holds derived variables of other events than {self.path} (the output "
                                     f"was made again); move or delete {file.name} to start afresh")
            for name, ds in f.get("vars", {}).items():
                self._register(name.replace("|", "/"), ds[()], str(ds.attrs.get("units", "")))
            if "filters" in f:
                for name, text in f["filters"].attrs.items():
                    self.cuts[name] = [tuple(c) for c in json.loads(text)]
        log.info("loaded %d derived variables and %d filters from %s", len(self.derived),
                 len(self.cuts), file)

    def _register(self, name: str, values: np.ndarray, units: str) -> None:
        self._cache[name] = values
        self.info[name] = {"shape": values.shape, "dtype": values.dtype, "units": units, "ragged": False,
                           "derived": True, "rows": "event", "rate": self.event_rate}
        if name not in self.events:
            self.events.append(name)
        self.derived[name] = units

    def addVar(self, name: str, values, units: str = "", overwrite: bool = False) -> None:
        """Add a per-event variable ``name`` (e.g. ``"derived/ratio"``) and save it beside the output.

        Parameters
        ----------
        name : str
            Path-like name; must not name a dataset of the output.
        values : array (N, ...)
            One row per event.
        units : str
        overwrite : bool
            Replace a derived variable of that name.
        """
        name = name.strip("/")
        values = np.asarray(values)
        if not name or "|" in name:
            raise SmallDataError(f"addVar: {name!r} is not a usable name; use e.g. 'derived/ratio'")
        if values.shape[:1] != (len(self),):
            raise SmallDataError(f"addVar {name!r}: {values.shape[0] if values.ndim else 0} rows, but the run has "
                                 f"{len(self)} events; give one value per event")
        if name in self.info and name not in self.derived:
            raise SmallDataError(f"addVar: {name!r} is a dataset of {self.path.name}; choose another name")
        if name in self.derived and not overwrite:
            raise SmallDataError(f"addVar: {name!r} exists; pass overwrite=True to replace it")
        self._register(name, values, units)
        self._save_derived()

    def removeVar(self, name: str) -> None:
        """Remove the derived variable ``name`` (from the session and the saved file)."""
        name = name.strip("/")
        if name not in self.derived:
            raise SmallDataError(f"removeVar: no derived variable {name!r}; derived: {sorted(self.derived)}")
        del self.derived[name], self.info[name], self._cache[name]
        self.events.remove(name)
        self._save_derived()

    def saveFilters(self) -> Path:
        """Save the named cuts (``addCut``) with the derived variables; the next session loads them."""
        return self._save_derived()

    def _save_derived(self) -> Path:
        file = self._derived_file()
        tmp = file.with_name(f".{file.name}.tmp")
        try:
            with h5py.File(tmp, "w") as f:
                f["trainId"] = self["trainId"]
                f["pulseId"] = self["pulseId"]
                group = f.create_group("vars")
                for name, units in self.derived.items():
                    ds = group.create_dataset(name.replace("/", "|"), data=self._cache[name])
                    ds.attrs["units"] = units
                filters = f.create_group("filters")
                for cut, conditions in self.cuts.items():
                    filters.attrs[cut] = json.dumps([list(c) for c in conditions])
            tmp.replace(file)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SmallDataError(f"cannot write {file}: {exc.strerror}; set ana.derived_path to a writable file")
        return file
