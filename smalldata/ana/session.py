"""SmallDataAna: the interactive view of a run's small-data file (``runSmallDataAna``).

Load the output, select events with cuts, bin and plot against scan variables, average
calibrated detector images from the raw data and tune ROIs, the beam centre, masks and frame
cuts on them, then write them into the producer config::

    ana = SmallDataAna.from_run(614, config="producer.yaml")
    sel = ana.cut("xgm/sa3_intensity", 500, None)
    img = ana.AvImage("dssc", selection=sel, max_trains=20)
    ana.plotAvImage(img)
    roi = ana.SelectRegion(img, module=3, roi=[0, 64, 0, 128], name="spec")
    ana.write_config("producer_tuned.yaml")

The features live in one module each (images, regions, scans, histograms, azimuthal, config
write-back, export); :class:`SmallDataAna` combines them with the file access below.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import h5py
import numpy as np
import yaml

from smalldata.ana.azint import AzIntMixin
from smalldata.ana.configwrite import ConfigWriteMixin
from smalldata.ana.cuts import CutsMixin
from smalldata.ana.derived import DerivedMixin
from smalldata.ana.export import ExportMixin
from smalldata.ana.histograms import HistogramsMixin
from smalldata.ana.images import ImagesMixin
from smalldata.ana.plotting import PlotOutput
from smalldata.ana.pumpprobe import PumpProbeMixin
from smalldata.ana.regions import RegionsMixin
from smalldata.ana.scans import ScansMixin
from smalldata.ana.trainrows import TrainRowsMixin, per_train_groups
from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
from smalldata.report.html import ReportMixin
from smalldata.errors import DataError, SmallDataError
from smalldata.output.files import check_output_file

log = logging.getLogger(__name__)

#: top-level groups of the output that do not hold per-event data
NOT_EVENT_GROUPS = ("UserDataCfg", "meta", "Sums", "Cubes")


class SmallDataAna(ImagesMixin, RegionsMixin, ScansMixin, HistogramsMixin, AzIntMixin, CutsMixin,
                   ConfigWriteMixin, ExportMixin, PumpProbeMixin, DerivedMixin, ReportMixin, TrainRowsMixin):
    """Read access, quick analysis and parameter tuning on one small-data output file.

    The file's datasets are on two kinds of rows: the events (``/trainId``, one row per frame;
    in a file of per-train cameras only, one per train) and each per-train group's own trains
    (``/<cam>/trainId``). ``ana.info[key]`` says which: ``rows`` (``"event"`` or the group's
    name) and ``rate`` (``"pulse"`` or ``"train"``); see :mod:`smalldata.ana.trainrows` for the
    joins (``on_events``, ``per_train``, ``train_selection``).

    Parameters
    ----------
    path : path
        The output file of ``smd_producer``.
    config_path : path, optional
        Producer config for raw-data access, geometry and :meth:`write_config` (default: the
        one recorded in the file).
    plot_dir : path, optional
        Also write every plot as a PNG into this folder (headless use).
    """

    def __init__(self, path, config_path: Optional[Path] = None, plot_dir: Optional[Path] = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"small-data file {self.path} does not exist; run smd_producer first")
        check_output_file(self.path)
        with h5py.File(self.path, "r") as f:
            meta = dict(f["meta"].attrs)
            self.info: Dict[str, dict] = {}
            self.train_groups: Dict[str, int] = per_train_groups(f)
            self.meta = meta
            self.config = yaml.safe_load(meta["config"])
            detectors = (self.config or {}).get("detectors") or {}
            #: what one event (a top-level row) is: a frame of a per-pulse detector, or a train
            #: when every detector of the file is per train
            self.event_rate = "train" if self.train_groups and set(detectors) <= set(self.train_groups) else "pulse"
            f.visititems(self._visit)
        self.run = int(meta["run"])
        self.proposal = int(meta["proposal"])
        self.config_given = config_path is not None
        self.config_path = Path(config_path or meta["config_path"])
        self.events: List[str] = list(self.info)
        self.plots = PlotOutput(plot_dir)
        self.cuts: Dict[str, list] = {}
        self.log = log
        self._cache: Dict[str, np.ndarray] = {}
        self._geometries: Dict[str, object] = {}
        self._tuned: Dict[str, dict] = {}
        self._load_derived()  # derived variables and named filters of earlier sessions

    def _visit(self, name: str, obj) -> None:
        from smalldata.output.coords import FRAME_COORDINATES
        from smalldata.output.conventions import NETCDF_DIMENSION_ONLY, RAGGED_ATTR

        if not isinstance(obj, h5py.Dataset):
            return
        group = name.split("/", 1)[0] if "/" in name else None
        if group in self.train_groups:
            self._visit_train_row(name, obj, group)
            return
        scale_name = obj.attrs.get("NAME", b"")
        if isinstance(scale_name, bytes) and scale_name.startswith(NETCDF_DIMENSION_ONLY.encode()):
            return  # a netCDF dimension without values (axis label), not data
        if "/" in name and isinstance(obj, h5py.Dataset) and (
                name.rsplit("/", 1)[1] in FRAME_COORDINATES or obj.attrs.get("CLASS", b"") == b"DIMENSION_SCALE"):
            return  # a group's copy of the frame coordinates, or a bin coordinate (q, phi): not an event variable
        if not name.startswith(NOT_EVENT_GROUPS):
            self.info[name] = {"shape": obj.shape, "dtype": obj.dtype, "units": str(obj.attrs.get("units", "")),
                               "ragged": RAGGED_ATTR in obj.attrs, "rows": "event", "rate": self.event_rate}

    def _visit_train_row(self, name: str, obj: h5py.Dataset, group: str) -> None:
        """A dataset of a per-train group: its rows are ``/<group>/trainId`` (listed too), not the events."""
        from smalldata.output.conventions import RAGGED_ATTR

        if name != f"{group}/trainId" and obj.attrs.get("CLASS", b"") == b"DIMENSION_SCALE":
            return  # an axis coordinate of the group (e.g. an energy axis), not a per-train variable
        self.info[name] = {"shape": obj.shape, "dtype": obj.dtype, "units": str(obj.attrs.get("units", "")),
                           "ragged": RAGGED_ATTR in obj.attrs, "rows": group, "rate": "train"}

    @classmethod
    def from_run(cls, run: int, config: Path, output: Optional[Path] = None,
                 plot_dir: Optional[Path] = None) -> "SmallDataAna":
        """Open the output of ``run`` as configured in ``config`` (or the file ``output``).

        The file's ``/meta`` must record ``run``: a file of another run is refused, naming both.
        """
        from smalldata.config.producer import ProducerConfig
        from smalldata.pipeline.eventloop import default_output

        cfg = ProducerConfig.from_file(config)
        ana = cls(output or default_output(cfg, run), config_path=cfg.path, plot_dir=plot_dir)
        if ana.run != int(run):
            raise DataError(f"{ana.path} holds run {ana.run} (its /meta run), not run {int(run)}; give -r {ana.run} "
                            f"or the output of run {int(run)}")
        return ana

    @classmethod
    def from_runs(cls, runs, config: Path, plot_dir: Optional[Path] = None,
                  allow_config_differences: bool = False):
        """Several runs as one session (a list, or a range such as ``"610-612,620"``): a
        :class:`~smalldata.ana.multirun.MultiRunAna`; runs made from different configs are refused."""
        from smalldata.ana.multirun import MultiRunAna
        from smalldata.beamtime.runrange import parse_run_range

        runs = parse_run_range(runs, "runs") if isinstance(runs, str) else [int(r) for r in runs]
        return MultiRunAna([cls.from_run(r, config, plot_dir=plot_dir) for r in runs], allow_config_differences)

    # ------------------------------------------------------------------ per-event data
    def keys(self) -> List[str]:
        """Every dataset of the file outside ``UserDataCfg``, ``meta`` and ``Sums`` (ragged fields too).

        Per-event and per-train datasets alike; ``ana.info[key]["rows"]`` tells them apart
        (:meth:`event_keys`, :meth:`train_keys`).
        """
        return list(self.events)

    def event_keys(self) -> List[str]:
        """Datasets with one row per event (per-train groups' datasets not, whatever their length)."""
        n = len(self)
        return [k for k, v in self.info.items() if not v["ragged"] and v.get("rows", "event") == "event"
                and len(v["shape"]) and v["shape"][0] == n]

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.lstrip("/") in self.info

    def __iter__(self) -> Iterator[str]:
        return iter(self.events)

    def __getitem__(self, name: str) -> np.ndarray:
        """A dataset as an array (cached)."""
        if not isinstance(name, str):
            raise KeyError(f"datasets are named by path, e.g. 'trainId', not {name!r}")
        name = name.lstrip("/")
        if name not in self._cache:
            if name not in self.info:
                from smalldata.config.schema import did_you_mean

                raise KeyError(f"{name!r} is not in {self.path}{did_you_mean(name, self.events)}")
            with h5py.File(self.path, "r") as f:
                self._cache[name] = f[name][()]
        return self._cache[name]

    def units(self, name: str) -> str:
        """The ``units`` attribute of a dataset ('' when it has none)."""
        if name.lstrip("/") not in self.info:
            self[name]  # raises with a suggestion
        return self.info[name.lstrip("/")]["units"]

    def __len__(self) -> int:
        return int(self.info["trainId"]["shape"][0]) if "trainId" in self.info else 0

    def user_data(self, path: str):
        """An entry of ``/UserDataCfg`` (dataset as array, group as dict of its attributes)."""
        with h5py.File(self.path, "r") as f:
            key = f"UserDataCfg/{path.strip('/')}"
            if key not in f:
                raise SmallDataError(f"{self.path} has no /{key}")
            obj = f[key]
            return obj[()] if isinstance(obj, h5py.Dataset) else dict(obj.attrs)

    # ------------------------------------------------------------------ run sums and cubes
    def run_sums(self, det: str = "dssc") -> Dict[str, np.ndarray]:
        """The run's per-pixel ``mean``, ``max``, ``pixel_count`` (and ``count_above``) of ``det``."""
        with h5py.File(self.path, "r") as f:
            names = [n for n in ("mean", "max", "pixel_count", "count_above") if f"Sums/{det}_{n}" in f]
            if not names:
                raise SmallDataError(f"{self.path} has no run sums of {det!r}; add 'sums: {{}}' to "
                                     f"detectors.{det} in the config")
            return {n: f[f"Sums/{det}_{n}"][()] for n in names}

    def cube(self, det: str = "dssc"):
        """The binned cube of ``det`` as a :class:`~smalldata.sums.cube.CubeAccumulator`.

        ``.mean()``, ``.xgm_normalised_mean()``, ``.count``, ``.labels`` and
        ``.binning.centres`` give the averages per (scan bin, pattern label).
        """
        from smalldata.sums.cube import CubeAccumulator

        with h5py.File(self.path, "r") as f:
            if f"Sums/{det}_cube" not in f:
                raise SmallDataError(f"{self.path} has no cube of {det!r}; add 'cube: {{scan: ...}}' to "
                                     f"detectors.{det} in the config")
            return CubeAccumulator.read(f[f"Sums/{det}_cube"])

    def det_modules(self, det: str = "dssc") -> tuple:
        """The modules the producer processed for ``det`` (from ``/UserDataCfg``)."""
        return tuple(int(m) for m in self.user_data(f"{det}/modules"))

    # ------------------------------------------------------------------ settings of the config or file
    def _geometry_settings(self, det: str):
        """(geometry_file, quadrant_positions) of ``det``: the ``-c`` config's if given, else the file's."""
        if self.config_given:
            from smalldata.config.producer import ProducerConfig

            config = ProducerConfig.from_file(self.config_path)
            if det not in config.detectors:
                raise SmallDataError(f"no detector {det!r} in {self.config_path}; detectors: {list(config.detectors)}")
            cfg = config.detectors[det]
            return cfg["geometry_file"], cfg["quadrant_positions"] or DSSC_DEFAULT_QUAD_POSITIONS
        attrs = self.user_data(det)
        geometry_file = attrs.get("geometry_file")
        quads = attrs.get("quadrant_positions")
        geometry_file = None if geometry_file in (None, "None") else str(geometry_file)
        quads = DSSC_DEFAULT_QUAD_POSITIONS if quads is None or isinstance(quads, str) else np.asarray(quads, float)
        return geometry_file, quads

    # ------------------------------------------------------------------ BOZ XAS
    def xas(self, scan: str = "scan/photon_energy", det: str = "dssc", func: str = "boz", order: str = "n",
            bins="unique", quantity: str = "absorbance", by_label: bool = True,
            selection: Optional[np.ndarray] = None) -> Dict:
        """BOZ spectrum of ``order``/0 versus ``scan`` per frame label, and pumped minus unpumped.

        Unsaturated frames only; three estimators per bin (``direct``, ``weighted``, ``mean``) with
        ``mean``, ``std``, ``stderr`` and ``counts``. See :func:`smalldata.boz.session.xas`.
        """
        from smalldata.boz.session import xas

        return xas(self, scan, det, func, order, bins, quantity, by_label=by_label, selection=selection)

    def plotXAS(self, result: Dict, method: str = "direct", ax=None):
        """Plot the result of :meth:`xas` with standard errors (needs matplotlib)."""
        from smalldata.boz.session import plot_xas

        return plot_xas(result, method, ax)

    def __repr__(self) -> str:
        groups = "".join(f", {g}: {n} trains" for g, n in sorted(self.train_groups.items()))
        return (f"SmallDataAna(run {self.run}, {len(self)} events (one per {self.event_rate}){groups}, "
                f"{len(self.events)} datasets, {self.path})")
