"""The live view: follow a live run's output as it grows and plot what a beamline user watches.

:class:`LiveView` reads the rows added since its last look (from the growing file of
:mod:`smalldata.live.livefile` while the run goes, then from the complete output), keeps running
sums, prints one status line per refresh and redraws one figure: the XGM and the ROI sums per
train, the latest and the accumulated azimuthal profile, the running average ROI image, and the
mean of the first ROI sum against the scan variable per frame label (the running scan). It
refreshes every ``interval`` seconds without blocking the prompt: in a background thread
when the figures are files (headless), on the figure's own timer with a window.
"""
from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, TextIO

import h5py
import numpy as np

log = logging.getLogger(__name__)


def growing_path(output: Path) -> Path:
    """The growing file of a live run's ``output`` (see :mod:`smalldata.live.livefile`)."""
    from smalldata.live.livefile import growing_path as path_of

    return path_of(output)


def read_rows(path: Path, start: int, swmr: bool) -> Dict[str, np.ndarray]:
    """Per-event datasets (up to 3-D) of ``path`` from row ``start`` on.

    While the file grows (``swmr``), rows are read up to the first row of the last train that
    every dataset has: a train is taken once all its rows are in.
    """
    from smalldata.output.conventions import RAGGED_ATTR

    kwargs = {"libver": "latest", "swmr": True} if swmr else {}
    with h5py.File(path, "r", **kwargs) as f:
        if "trainId" not in f:
            return {}
        names: List[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.ndim <= 3 and not n.startswith(
            ("UserDataCfg", "meta", "Sums", "dim")) and RAGGED_ATTR not in o.attrs else None)
        datasets = {n: f[n] for n in names}
        if swmr:
            for ds in datasets.values():
                ds.refresh()
        n = min(ds.shape[0] for ds in datasets.values())
        tids = datasets["trainId"][start:n]
        if swmr and len(tids):
            n = start + int(np.searchsorted(tids, tids[-1], "left"))
        if n <= start:
            return {}
        return {name: ds[start:n] for name, ds in datasets.items()}


@dataclass
class RunningState:
    """What the view has accumulated so far."""

    rows: int = 0
    trains: List[int] = field(default_factory=list)
    xgm: List[float] = field(default_factory=list)
    roi: Dict[str, List[float]] = field(default_factory=dict)
    profile_sum: Optional[np.ndarray] = None
    profile_n: int = 0
    latest_profile: Optional[np.ndarray] = None
    image_sum: Optional[np.ndarray] = None
    image_n: int = 0
    scan: Dict[tuple, List[float]] = field(default_factory=dict)  # (label, scan value) -> [sum, count]


class LiveView:
    """Follow the output ``path`` of a live run.

    Parameters
    ----------
    path : Path
        The live run's output (``--output`` of ``smd_producer --bridge``).
    interval : float
        Seconds between refreshes.
    plot_dir : Path, optional
        Write the figure to ``<plot_dir>/live.png`` at every refresh (headless use).
    out : file, optional
        Where status lines go (default stdout).
    """

    def __init__(self, path: Path, interval: float = 3.0, plot_dir: Optional[Path] = None,
                 out: Optional[TextIO] = None):
        self.path = Path(path)
        self.interval = float(interval)
        self.plot_dir = Path(plot_dir) if plot_dir is not None else None
        self.out = out or sys.stdout
        self.state = RunningState()
        self.complete = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._timer = None
        self._figure = None

    # ------------------------------------------------------------------ reading
    def refresh(self) -> RunningState:
        """Read the new rows, update the running sums, print a status line and redraw."""
        grown = growing_path(self.path)
        source, swmr = (grown, True) if grown.exists() else (self.path, False)
        if not source.exists():
            self._status(f"live {self.path.name}: waiting for the run's first rows")
            return self.state
        complete = not swmr  # the complete file repeats the grown rows in the same order: continue after them
        try:
            rows = read_rows(source, self.state.rows, swmr)
        except (OSError, KeyError) as exc:  # a file between its growing and its complete state
            log.debug("live view: %s not readable yet: %s", source, exc)
            return self.state
        self.complete = complete
        if rows:
            self._accumulate(rows)
        self._status(self.status_line())
        self.draw()
        return self.state

    def _accumulate(self, rows: Dict[str, np.ndarray]) -> None:
        s = self.state
        tids = rows["trainId"]
        s.rows += len(tids)
        trains = np.unique(tids)
        inverse = np.searchsorted(trains, tids)

        def per_train(values):
            sums = np.bincount(inverse, weights=np.nan_to_num(values), minlength=len(trains))
            counts = np.bincount(inverse, weights=np.isfinite(values), minlength=len(trains))
            with np.errstate(invalid="ignore"):
                return sums / counts

        s.trains += [int(t) for t in trains]
        xgm_key = next((k for k in rows if k.startswith("xgm/")), None)
        s.xgm += list(per_train(rows[xgm_key].astype(float))) if xgm_key else [np.nan] * len(trains)
        for key, values in rows.items():
            if key.count("/") == 1 and key.endswith("_sum") and values.ndim == 1 and not key.startswith("Sums"):
                s.roi.setdefault(key, []).extend(per_train(values.astype(float)))
            elif values.ndim == 3 and key.endswith(("_mean", "_sum")) and not key.endswith("_image"):
                profile = np.nanmean(values.astype(float), axis=1)  # (N, n_q): average over the azimuth
                s.latest_profile = profile[-1]
                total = np.nansum(profile, axis=0)
                s.profile_sum = total if s.profile_sum is None else s.profile_sum + total
                s.profile_n += len(profile)
            elif values.ndim == 3 and key.endswith("_image"):
                total = np.nansum(values.astype(float), axis=0)
                s.image_sum = total if s.image_sum is None else s.image_sum + total
                s.image_n += len(values)
        scan_key = next((k for k in rows if k.startswith("scan/")), None)
        roi_key = next(iter(sorted(s.roi)), None)
        if scan_key and roi_key and roi_key in rows:
            labels = rows["pattern/label_id"] if "pattern/label_id" in rows else np.zeros(len(tids), int)
            for label, value, y in zip(labels, rows[scan_key], rows[roi_key]):
                if np.isfinite(value) and np.isfinite(y):
                    acc = s.scan.setdefault((int(label), float(value)), [0.0, 0])
                    acc[0] += float(y)
                    acc[1] += 1

    def status_line(self) -> str:
        """``live FILE: R rows, T trains, last train L, XGM X uJ [growing|complete]``."""
        s = self.state
        if not s.rows:
            return f"live {self.path.name}: no rows yet"
        last_xgm = s.xgm[-1] if s.xgm else np.nan
        return (f"live {self.path.name}: {s.rows} rows, {len(np.unique(s.trains))} trains, last train "
                f"{s.trains[-1]}, XGM {last_xgm:.1f} uJ [{'complete' if self.complete else 'growing'}]")

    def _status(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # ------------------------------------------------------------------ drawing
    def draw(self) -> None:
        """Redraw the figure (and write it to ``plot_dir`` if set)."""
        from smalldata.ana.plotting import pyplot

        plt = pyplot()
        s = self.state
        if self._figure is None:
            self._figure, _ = plt.subplots(2, 2, figsize=(11, 8))
        fig = self._figure
        ax_t, ax_q, ax_img, ax_scan = fig.axes[:4]
        for ax in (ax_t, ax_q, ax_img, ax_scan):
            ax.clear()
        if s.trains:
            ax_t.plot(s.trains, s.xgm, ".", label="XGM (uJ)")
            xgm = np.asarray(s.xgm, dtype=float)
            top = float(np.max(xgm[np.isfinite(xgm)])) if np.isfinite(xgm).any() else 1.0
            for key, values in s.roi.items():  # each ROI sum scaled to the XGM's range, to share the axis
                values = np.asarray(values, dtype=float)
                finite = np.abs(values[np.isfinite(values)])
                scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
                ax_t.plot(s.trains[:len(values)], values / scale * top, ".", label=f"{key} (scaled)")
            ax_t.set_xlabel("train id")
            ax_t.legend(fontsize="small")
        if s.profile_sum is not None:
            ax_q.plot(s.latest_profile, label="latest frame")
            ax_q.plot(s.profile_sum / max(s.profile_n, 1), label=f"mean of {s.profile_n} frames")
            ax_q.set_xlabel("q bin")
            ax_q.legend(fontsize="small")
        if s.image_sum is not None:
            ax_img.imshow(s.image_sum / max(s.image_n, 1), origin="lower")
            ax_img.set_title(f"running average ROI image ({s.image_n} frames)")
        for label in sorted({k[0] for k in s.scan}):
            points = sorted((v, acc[0] / acc[1]) for (lab, v), acc in s.scan.items() if lab == label)
            ax_scan.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"label {label}")
        if s.scan:
            ax_scan.set_xlabel("scan value")
            ax_scan.legend(fontsize="small")
        fig.suptitle(self.status_line())
        if self.plot_dir is not None:
            self.plot_dir.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.plot_dir / "live.png")
        else:
            fig.canvas.draw_idle()

    # ------------------------------------------------------------------ following
    def start(self) -> "LiveView":
        """Refresh every :attr:`interval` seconds from now on (returns at once)."""
        from smalldata.ana.plotting import backend_is_interactive

        if self.plot_dir is None and backend_is_interactive():
            from smalldata.ana.plotting import pyplot

            self.refresh()
            self._timer = self._figure.canvas.new_timer(interval=int(self.interval * 1000))
            self._timer.add_callback(self.refresh)
            self._timer.start()
            pyplot().show(block=False)
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="smalldata-live-view", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the view keeps following; the reason is logged
                log.warning("live view: refresh failed: %s", exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()
        if self._timer is not None:
            self._timer.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)


def follow(path: Path, interval: float = 3.0, plot_dir: Optional[Path] = None) -> LiveView:
    """Start a :class:`LiveView` of a live run's output ``path`` and return it (``view.stop()`` ends it)."""
    return LiveView(path, interval=interval, plot_dir=plot_dir).start()
