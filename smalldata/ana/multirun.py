"""Several runs in one session: ``SmallDataAna.from_runs([610, 611, 612], config)``.

A :class:`MultiRunAna` holds one :class:`~smalldata.ana.session.SmallDataAna` per run and shows
their per-event data as one: ``ana["dssc/roi_sum"]`` is the runs' arrays one after the other (in
the order given), ``ana["run"]`` the run of each event; cuts, :meth:`binned` and :meth:`plotScan`
work on that concatenation, :meth:`to_xarray` and :meth:`to_dataframe` carry a ``run``
coordinate, and :meth:`AvImage` averages the selected frames of all runs.

Runs made from different configs are refused, naming the runs and the config keys that differ
(a scan of runs only means something when every run was processed alike); pass
``allow_config_differences=True`` to combine them anyway: the differences are then logged and
kept in :attr:`MultiRunAna.config_differences`.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import h5py
import numpy as np

from smalldata.ana.cuts import CutsMixin
from smalldata.ana.scans import ScansMixin
from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)


def config_differences(first: dict, other: dict, prefix: str = "") -> List[str]:
    """Dotted paths of the keys whose values differ between two config mappings."""
    if isinstance(first, dict) and isinstance(other, dict):
        paths = []
        for key in sorted(set(first) | set(other), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in first or key not in other:
                paths.append(where)
            else:
                paths.extend(config_differences(first[key], other[key], where))
        return paths
    return [] if first == other else [prefix or "(whole config)"]


def _module_frames(session, selection: Optional[np.ndarray], max_trains: int, modules: Sequence[int],
                   selected_trains) -> List[int]:
    """Per module, the selected frames of the first ``max_trains`` selected trains that have its data."""
    tids, _, sel, trains = selected_trains(session, selection, max_trains)
    chosen = sel & np.isin(tids, trains)
    with h5py.File(session.path, "r") as f:
        incomplete = f["meta/incomplete_trains"][()] if "meta/incomplete_trains" in f else np.zeros((0, 2))
    counts = []
    for module in modules:
        lacking = incomplete[incomplete[:, 1] == module, 0] if len(incomplete) else np.zeros(0, np.uint64)
        counts.append(int((chosen & ~np.isin(tids, lacking)).sum()))
    return counts


class MultiRunAna(ScansMixin, CutsMixin):
    """The per-event data of several runs as one session.

    Parameters
    ----------
    sessions : sequence of SmallDataAna
        One session per run, in the order their events are concatenated.
    allow_config_differences : bool
        Combine runs whose configs differ (logged) instead of refusing them.
    """

    def __init__(self, sessions: Sequence, allow_config_differences: bool = False):
        from smalldata.beamtime.runrange import format_run_range

        self.sessions = list(sessions)
        if not self.sessions:
            raise SmallDataError("no runs given; pass a list or range of runs, e.g. [610, 611] or '610-612'")
        self.runs = tuple(s.run for s in self.sessions)
        if len(set(self.runs)) != len(self.runs):
            raise SmallDataError(f"runs {list(self.runs)}: a run is given twice")
        first = self.sessions[0]
        self.proposal = first.proposal
        self.config = first.config
        self.config_path = first.config_path
        self.run = format_run_range(self.runs)
        #: how messages name these outputs
        self.path = f"the outputs of runs {self.run}"
        self.plots = first.plots
        self.log = log
        self.cuts: Dict[str, list] = {}
        self._cache: Dict[str, np.ndarray] = {}
        self.config_differences: Dict[int, List[str]] = {}
        for s in self.sessions[1:]:
            diff = config_differences(first.config, s.config)
            if diff:
                self.config_differences[s.run] = diff
        if self.config_differences:
            text = "; ".join(f"run {r}: {', '.join(d[:5])}{' ...' if len(d) > 5 else ''}"
                             for r, d in self.config_differences.items())
            if not allow_config_differences:
                raise SmallDataError(f"runs {format_run_range(self.config_differences)} were made from another "
                                     f"config than run {first.run} ({text}); reprocess them with one config "
                                     "(smd_submit), open them separately, or pass allow_config_differences=True")
            log.warning("combining runs made from different configs than run %d: %s", first.run, text)
        self.events = [k for k in first.keys() if all(k in s for s in self.sessions[1:])]

    # ------------------------------------------------------------------ per-event data
    def keys(self) -> List[str]:
        """Datasets every run has."""
        return list(self.events)

    def event_keys(self) -> List[str]:
        """Per-event datasets of every run."""
        common = set(self.sessions[0].event_keys())
        for s in self.sessions[1:]:
            common &= set(s.event_keys())
        return [k for k in self.sessions[0].event_keys() if k in common]

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and (name.lstrip("/") == "run" or all(name in s for s in self.sessions))

    def __len__(self) -> int:
        return sum(len(s) for s in self.sessions)

    def __getitem__(self, name: str) -> np.ndarray:
        """The runs' arrays of dataset ``name`` one after the other; ``"run"``: each event's run."""
        if not isinstance(name, str):
            raise KeyError(f"datasets are named by path, e.g. 'trainId', not {name!r}")
        name = name.lstrip("/")
        if name not in self._cache:
            if name == "run":
                self._cache[name] = np.repeat(np.asarray(self.runs, dtype=np.int64), [len(s) for s in self.sessions])
            else:
                lacking = [s.run for s in self.sessions if name not in s]
                if lacking and len(lacking) < len(self.sessions):
                    raise KeyError(f"{name!r} is not in the output of run(s) {lacking}; use a dataset every run has")
                self._cache[name] = np.concatenate([s[name] for s in self.sessions])
        return self._cache[name]

    def units(self, name: str) -> str:
        """The ``units`` attribute of a dataset (of the first run)."""
        return "" if name.lstrip("/") == "run" else self.sessions[0].units(name)

    def user_data(self, path: str):
        """An entry of ``/UserDataCfg`` of the first run (the runs share their config)."""
        return self.sessions[0].user_data(path)

    @property
    def frame_index(self) -> np.ndarray:
        """Position of each event's frame in its train."""
        return np.concatenate([s.frame_index for s in self.sessions])

    def split(self, selection: Optional[np.ndarray]) -> List[Optional[np.ndarray]]:
        """A selection over all events as one selection per run (None stays None)."""
        if selection is None:
            return [None] * len(self.sessions)
        selection = np.asarray(selection, bool)
        if selection.shape != (len(self),):
            raise SmallDataError(f"selection has {selection.size} entries, the runs {len(self)} events")
        bounds = np.cumsum([0] + [len(s) for s in self.sessions])
        return [selection[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    # ------------------------------------------------------------------ export
    def to_xarray(self, keys: Optional[Sequence[str]] = None, by: str = "event"):
        """The runs' :meth:`SmallDataAna.to_xarray` one after the other, with a ``run`` coordinate.

        ``by="event"``: along ``event`` (numbered 0.. over all runs), a per-train group's variables
        along its ``<cam>_trainId`` with a ``<cam>_run`` coordinate; ``by="train"``: along
        ``trainId`` (frames a train lacks are NaN, as for one run).
        """
        import xarray as xr

        parts = [s.to_xarray(keys, by) for s in self.sessions]
        groups = [f"{g}_trainId" for g in sorted({g for s in self.sessions for g in getattr(s, "train_groups", {})})]
        axes = {"event" if by == "event" else "trainId": "run"}
        if by == "event":
            axes.update({dim: f"{dim[:-len('_trainId')]}_run" for dim in groups})
        pieces = []
        for dim, run_coord in axes.items():
            others = [d for d in axes if d != dim]
            on_dim = [_on_axis(ds, dim, others).assign_coords({run_coord: (dim, np.full(ds.sizes[dim], s.run,
                                                                                          dtype=np.int64))})
                      for s, ds in zip(self.sessions, parts) if dim in ds.dims]
            if on_dim:
                pieces.append(xr.concat(on_dim, dim=dim, data_vars="all", coords="different", compat="equals",
                                        join="outer", combine_attrs="drop_conflicts"))
        combined = pieces[0] if len(pieces) == 1 else xr.merge(pieces, join="outer", compat="no_conflicts",
                                                               combine_attrs="drop_conflicts")
        combined.attrs.update({"runs": list(self.runs), "proposal": self.proposal})
        combined.attrs.pop("run", None)
        combined.attrs.pop("source", None)
        return combined

    def to_dataframe(self, keys: Optional[Sequence[str]] = None, per: str = "event"):
        """The runs' :meth:`SmallDataAna.to_dataframe` one after the other, indexed by (run, trainId[, pulse])."""
        import pandas as pd

        frames = [s.to_dataframe(keys, per) for s in self.sessions]
        combined = pd.concat(frames, keys=list(self.runs), names=["run"])
        combined.attrs["units"] = frames[0].attrs.get("units", {})
        return combined

    # ------------------------------------------------------------------ rows of per-train groups
    def rows_of(self, key: str) -> str:
        """``"event"`` for a per-event dataset, else the name of its per-train group (of the first run)."""
        if key.lstrip("/") == "run":
            return "event"
        return self.sessions[0].rows_of(key)

    def on_events(self, key: str) -> np.ndarray:
        """Each run's :meth:`SmallDataAna.on_events` one after the other (one row per event of all runs)."""
        if self.rows_of(key) == "event":
            return self[key]
        return np.concatenate([s.on_events(key) for s in self.sessions])

    def on_rows(self, key: str, rows: str) -> np.ndarray:
        """``key`` on the events of all runs (``rows="event"``); a group's rows are per run."""
        return self.on_events(key) if rows == "event" else self._one_run_only()

    def _one_run_only(self, *args, **kwargs):
        raise SmallDataError("a per-train group's rows are per run: use the run's own session, "
                             "ana.sessions[i], for per_train, train_selection and cuts per=<cam>")

    per_train = train_ids = train_selection = _one_run_only

    # ------------------------------------------------------------------ images
    def AvImage(self, det: str = "dssc", selection: Optional[np.ndarray] = None, max_trains: int = 50,
                statistic: str = "mean", modules: Optional[Sequence[int]] = None):
        """The average (or max) calibrated image of the selected events of all runs.

        Each run contributes :meth:`SmallDataAna.AvImage` of at most ``max_trains`` of its
        trains. The mean weighs each run's module image by the selected frames that module has
        data for (a train the output's ``/meta/incomplete_trains`` lists for the module does not
        count; a pixel NaN in a run, never good there, has no weight in it); the max is the
        largest over the runs.
        """
        from smalldata.ana.images import DetImage
        from smalldata.sums.average import selected_trains

        images, weights = [], []
        for s, sel in zip(self.sessions, self.split(selection)):
            if sel is not None and not sel.any():
                continue
            img = s.AvImage(det, sel, max_trains, statistic, modules)
            images.append(img)
            weights.append(_module_frames(s, sel, max_trains, img.modules, selected_trains))
        if not images:
            raise SmallDataError("the selection holds no events")
        if any(img.modules != images[0].modules for img in images):
            raise SmallDataError(f"the runs' images have different modules "
                                 f"({sorted({img.modules for img in images})}); pass modules=[...]")
        stack = np.stack([np.asarray(img, dtype=np.float64) for img in images])
        if statistic == "max":
            with np.errstate(invalid="ignore"):
                image = np.fmax.reduce(stack, axis=0)
        else:
            w = np.asarray(weights, dtype=np.float64)[:, :, None, None]
            good = np.isfinite(stack)
            with np.errstate(invalid="ignore", divide="ignore"):
                image = (np.where(good, stack, 0.0) * w).sum(axis=0) / (good * w).sum(axis=0)
        first = images[0]
        return DetImage(image, first.modules, self.sessions[0].geometry(det), det, first.units,
                        sum(img.n_frames for img in images), statistic)

    def plotAvImage(self, image, det: str = "dssc", ax=None, vmin: Optional[float] = None,
                    vmax: Optional[float] = None, modules: Optional[Sequence[int]] = None, geometry=None,
                    title: Optional[str] = None):
        """Draw an image as :meth:`SmallDataAna.plotAvImage` does (the first run's geometry)."""
        return self.sessions[0].plotAvImage(image, det, ax, vmin, vmax, modules, geometry,
                                            title or f"runs {self.run}")

    def __repr__(self) -> str:
        return f"MultiRunAna(runs {self.run}, {len(self)} events, {len(self.events)} datasets)"


def _on_axis(ds, dim: str, others: Sequence[str]):
    """The variables of ``ds`` on axis ``dim`` (not on the axes ``others``) with only their coordinates."""
    sub = ds.drop_dims([d for d in others if d in ds.dims])
    used = {dim}.union(*(v.dims for v in sub.data_vars.values()))
    return sub.drop_vars([c for c, v in sub.coords.items() if not set(v.dims) <= used])
