"""SmallDataAna: the interactive view of a run's small-data file (``runSmallDataAna``).

Load the output, select events with cuts, bin a quantity against a scan variable, and
compute average calibrated detector images from the raw data of selected events to tune
ROIs, centres and masks::

    ana = SmallDataAna.from_run(614, config="producer.yaml")
    sel = ana.cut("xgm/sa3_intensity", 500, None)
    img = ana.AvImage("dssc", selection=sel, max_trains=20)
    ana.plotAvImage(img)
    print(ana.roi_stats(img, module=3, roi=[0, 64, 0, 128]))
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import h5py
import numpy as np
import yaml

from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
from smalldata.errors import DataError, SmallDataError

log = logging.getLogger(__name__)


class SmallDataAna:
    """Read access and quick analysis of one small-data output file.

    Parameters
    ----------
    path : path
        The output file of ``smd_producer``.
    config_path : path, optional
        Config to use for raw-data access (default: the one recorded in the file).
    """

    def __init__(self, path, config_path: Optional[Path] = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"small-data file {self.path} does not exist; run smd_producer first")
        with h5py.File(self.path, "r") as f:
            meta = dict(f["meta"].attrs)
            self.events: List[str] = []
            f.visititems(lambda name, obj: self.events.append(name)
                         if isinstance(obj, h5py.Dataset) and not name.startswith(("UserDataCfg", "meta", "Sums",
                                                                                    "Cubes")) else None)
        self.meta = meta
        self.run = int(meta["run"])
        self.proposal = int(meta["proposal"])
        self.config = yaml.safe_load(meta["config"])
        self.config_path = Path(config_path or meta["config_path"])
        self._cache: Dict[str, np.ndarray] = {}
        self.image_modules: tuple = ()

    @classmethod
    def from_run(cls, run: int, config: Path, output: Optional[Path] = None) -> "SmallDataAna":
        """Open the output of ``run`` as configured in ``config`` (or the file ``output``)."""
        from smalldata.config.producer import ProducerConfig
        from smalldata.pipeline.eventloop import default_output

        cfg = ProducerConfig.from_file(config)
        return cls(output or default_output(cfg, run), config_path=cfg.path)

    # ------------------------------------------------------------------ per-event data
    def keys(self) -> List[str]:
        """Per-event datasets (and ragged fields)."""
        return list(self.events)

    def __getitem__(self, name: str) -> np.ndarray:
        """A per-event dataset as an array (cached)."""
        name = name.lstrip("/")
        if name not in self._cache:
            with h5py.File(self.path, "r") as f:
                if name not in f:
                    from smalldata.config.schema import did_you_mean

                    raise KeyError(f"{name!r} is not in {self.path}{did_you_mean(name, self.events)}")
                self._cache[name] = f[name][()]
        return self._cache[name]

    def __len__(self) -> int:
        return len(self["trainId"])

    def cut(self, name: str, low: Optional[float] = None, high: Optional[float] = None,
            selection: Optional[np.ndarray] = None) -> np.ndarray:
        """Boolean event selection ``low <= name <= high`` (NaN excluded), combined with ``selection``."""
        values = self[name]
        keep = np.isfinite(values) if values.dtype.kind == "f" else np.ones(len(values), bool)
        if low is not None:
            keep &= values >= low
        if high is not None:
            keep &= values <= high
        return keep if selection is None else keep & selection

    def binned(self, name: str, by: str, bins, selection: Optional[np.ndarray] = None,
               normalise_by: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Mean of ``name`` in bins of ``by`` (e.g. an ROI sum against the delay).

        Parameters
        ----------
        bins : int or sequence
            Bin edges, or a number of equal bins over the selected range.
        normalise_by : str, optional
            Divide the bin's sum of ``name`` by the sum of this dataset (e.g. the XGM).
        """
        sel = np.ones(len(self), bool) if selection is None else selection
        x, y = self[by][sel], self[name][sel].astype(np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        weights = self[normalise_by][sel].astype(np.float64) if normalise_by else np.ones_like(y)
        ok &= np.isfinite(weights)
        edges = np.histogram_bin_edges(x[ok], bins=bins) if np.isscalar(bins) else np.asarray(bins, float)
        idx = np.digitize(x[ok], edges) - 1
        inside = (idx >= 0) & (idx < len(edges) - 1)
        n = len(edges) - 1
        counts = np.bincount(idx[inside], minlength=n)
        sums = np.bincount(idx[inside], weights=y[ok][inside], minlength=n)
        norm = np.bincount(idx[inside], weights=weights[ok][inside], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / norm
        return {"centres": 0.5 * (edges[1:] + edges[:-1]), "edges": edges, "mean": mean, "count": counts}

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

    # ------------------------------------------------------------------ images from raw data
    def AvImage(self, det: str = "dssc", selection: Optional[np.ndarray] = None, max_trains: int = 50,
                statistic: str = "mean", modules: Optional[Sequence[int]] = None) -> np.ndarray:
        """Average (or max) calibrated image of the selected events, from the raw data.

        Reads the raw frames of at most ``max_trains`` trains that hold selected events, for
        ``modules`` (default: every module of the run). Returns (M, 128, 512) float32 in the
        detector's units, NaN where a pixel was never good; :attr:`image_modules` says which
        modules the M entries are.
        """
        from smalldata.config.producer import ProducerConfig
        from smalldata.io.runaccess import RunAccess
        from smalldata.pipeline.detectors import build_detobject

        if statistic not in ("mean", "max"):
            raise SmallDataError(f"statistic must be 'mean' or 'max', got {statistic!r}")
        config = ProducerConfig.from_file(self.config_path)
        if det not in config.detectors:
            raise SmallDataError(f"no detector {det!r} in {self.config_path}; detectors: {list(config.detectors)}")
        access = RunAccess.open(self.proposal, self.run, config.settings["data_root"])
        modules = tuple(sorted(modules)) if modules is not None else access.available_modules()
        detobj = build_detobject(config, det, self.proposal, modules, access)
        tids, pids = self["trainId"], self["pulseId"]
        sel = np.ones(len(tids), bool) if selection is None else np.asarray(selection, bool)
        trains = np.unique(tids[sel])[:max_trains]
        if len(trains) == 0:
            raise SmallDataError("the selection holds no events")
        wanted = set(zip(tids[sel].tolist(), pids[sel].tolist()))
        total = count = None
        for start in range(0, len(trains), 8):
            raw = access.read_raw(modules, trains[start:start + 8])
            frames = detobj.calibrate(raw)
            pick = np.array([(t, p) in wanted for t, p in zip(raw.train_ids.tolist(), raw.pulse_ids.tolist())])
            data = np.where(frames.valid[pick], frames.data[pick], np.nan)
            if statistic == "max":
                block = np.fmax.reduce(data, axis=0)
                total = block if total is None else np.fmax(total, block)
            else:
                s = np.nansum(data, axis=0, dtype=np.float64)
                c = np.isfinite(data).sum(axis=0)
                total = s if total is None else total + s
                count = c if count is None else count + c
        self.image_modules = modules
        if statistic == "max":
            return total.astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / count).astype(np.float32)

    def assemble(self, image: np.ndarray, det: str = "dssc") -> np.ndarray:
        """Assemble (16, 128, 512) module images into one 2-D image with the detector geometry."""
        from smalldata.geometry.positions import load_dssc_geometry

        det_cfg = self.config["detectors"][det]
        geom = load_dssc_geometry(det_cfg.get("geometry_file"),
                                  det_cfg.get("quadrant_positions") or DSSC_DEFAULT_QUAD_POSITIONS)
        if image.shape[0] != 16:
            full = np.full((16,) + image.shape[1:], np.nan, dtype=np.float32)
            full[list(getattr(self, "image_modules", range(image.shape[0])))] = image
            image = full
        assembled, _ = geom.position_modules(image)
        return assembled

    def plotAvImage(self, image: np.ndarray, det: str = "dssc", ax=None, vmin=None, vmax=None):
        """Show an average image assembled with the geometry (needs matplotlib)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise SmallDataError("plotting needs matplotlib: pip install 'smalldata[interactive]'") from None
        assembled = self.assemble(image, det)
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 8))
        finite = assembled[np.isfinite(assembled)]
        lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0, 1))
        ax.imshow(assembled, origin="lower", vmin=vmin if vmin is not None else lo,
                  vmax=vmax if vmax is not None else hi)
        ax.set_title(f"run {self.run} {det}")
        return ax

    @staticmethod
    def roi_stats(image: np.ndarray, module: int, roi: Sequence[int], modules: Optional[Sequence[int]] = None) -> Dict:
        """Sum, mean, max and centre of mass of ``roi`` = [y0, y1, x0, x1] of an average image."""
        j = list(modules).index(module) if modules is not None else module
        y0, y1, x0, x1 = roi
        crop = image[j, y0:y1, x0:x1]
        good = np.isfinite(crop)
        values = np.where(good, crop, 0.0)
        total = values.sum()
        rows, cols = np.mgrid[y0:y1, x0:x1]
        return {"sum": float(total), "mean": float(values.sum() / max(good.sum(), 1)),
                "max": float(values.max()) if good.any() else float("nan"), "npix": int(good.sum()),
                "com_y": float((values * rows).sum() / total) if total > 0 else float("nan"),
                "com_x": float((values * cols).sum() / total) if total > 0 else float("nan")}

    def __repr__(self) -> str:
        return f"SmallDataAna(run {self.run}, {len(self)} events, {len(self.events)} datasets, {self.path})"
