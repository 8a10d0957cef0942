"""Histograms: per-event and per-train variables (plotVar, 1-D and 2-D) and pixel values (pixelHistogram).

``plotVar("xgm/sa3_intensity")`` shows where to put ``rejection.xgm_min``;
``plotVar("xgm/sa3_intensity", "dssc/spot_sum")`` an ROI against the XGM;
``pixelHistogram`` the calibrated pixel values of selected frames, whose photon peaks check
the gain (peaks at 0, 1, 2, ... photons when the gain is right).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from smalldata.ana.scans import check_bin_count
from smalldata.errors import SmallDataError


def histogram_peaks(counts: np.ndarray, centres: np.ndarray, min_fraction: float = 1e-3,
                    half_width: Optional[float] = None) -> np.ndarray:
    """Positions of the local maxima of a histogram, refined as centroids over +- ``half_width``.

    Maxima below ``min_fraction`` of the highest, and those closer than ``half_width`` to a
    higher one, are dropped; ``half_width`` defaults to 0.3 in the values' units (photons).
    """
    counts = np.asarray(counts, dtype=float)
    half_width = 0.3 if half_width is None else half_width
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    inner = (smooth[1:-1] >= smooth[:-2]) & (smooth[1:-1] > smooth[2:]) & (smooth[1:-1] >= min_fraction * smooth.max())
    candidates = np.flatnonzero(inner) + 1
    kept = []
    for i in candidates[np.argsort(-smooth[candidates])]:
        if all(abs(centres[i] - centres[j]) > half_width for j in kept):
            kept.append(i)
    peaks = []
    for i in sorted(kept):
        near = np.abs(centres - centres[i]) <= half_width
        peaks.append(float((counts[near] * centres[near]).sum() / counts[near].sum()))
    return np.array(peaks)


def check_hist_bins(bins, dims: int):
    """``bins`` of a ``dims``-dimensional histogram checked: a positive count or increasing edges (per axis).

    Returns the bins in numpy's terms; a wrong value is a one-line error naming it.
    """
    def one_axis(value):
        if np.ndim(value) == 0:
            return check_bin_count(value)
        edges = np.asarray(value, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise SmallDataError(f"bins={value!r}: give a positive number of bins, or at least 2 increasing "
                                 "bin edges")
        return edges

    if dims == 2 and isinstance(bins, (list, tuple, np.ndarray)) and len(bins) == 2:
        return [one_axis(b) for b in bins]  # numpy's histogram2d: one count or edge array per axis
    return one_axis(bins)


class HistogramsMixin:
    """plotVar and pixelHistogram of ``SmallDataAna``."""

    def plotVar(self, name: str, name2: Optional[str] = None, bins=50, selection: Optional[np.ndarray] = None,
                value_range: Optional[Sequence] = None, log: bool = False, ax=None) -> Dict[str, np.ndarray]:
        """Histogram of a scalar, or 2-D histogram of two (``name`` on x, ``name2`` on y).

        The histogram counts the rows of ``name``: events, or a per-train group's rows (then
        ``name2`` is taken per row of its train, a per-event value as the mean of the train's
        frames); a per-train ``name2`` against a per-event ``name`` applies to every frame of its train.

        Parameters
        ----------
        bins : int or sequence
            Bins (numpy's ``histogram`` / ``histogram2d`` conventions).
        selection : bool array, optional
            Rows of ``name`` to use (NaN values are always left out).
        value_range : (low, high) or ((xlow, xhigh), (ylow, yhigh)), optional
            Histogram range.
        log : bool
            Logarithmic counts.

        Returns
        -------
        dict
            ``counts`` and ``edges`` (1-D) or ``xedges``, ``yedges`` (2-D).
        """
        bins = check_hist_bins(bins, 1 if name2 is None else 2)
        x = self._scalar(name)
        rows = self.rows_of(name)
        sel = np.ones(len(x), bool) if selection is None else np.asarray(selection, bool)
        if sel.shape != x.shape:
            raise SmallDataError(f"selection has {sel.size} entries, {name!r} {len(x)} rows; give one per row"
                                 + ("" if rows == "event" else f" of {rows} (ana.getFilter(cut, per={rows!r}))"))
        fig, ax = self.plots.subplots(figsize=(6, 4.5), ax=ax)
        if name2 is None:
            ok = sel & np.isfinite(x)
            counts, edges = np.histogram(x[ok], bins=bins, range=value_range)
            ax.stairs(counts, edges, fill=True, alpha=0.7)
            ax.set_xlabel(self._label(name))
            ax.set_ylabel("events" if rows == "event" else f"{rows} trains")
            if log:
                ax.set_yscale("log")
            result = {"counts": counts, "edges": edges}
        else:
            y = self._scalar(name2, rows)
            ok = sel & np.isfinite(x) & np.isfinite(y)
            counts, xedges, yedges = np.histogram2d(x[ok], y[ok], bins=bins, range=value_range)
            from matplotlib.colors import LogNorm

            mesh = ax.pcolormesh(xedges, yedges, counts.T, norm=LogNorm() if log else None, shading="flat")
            fig.colorbar(mesh, ax=ax, label="events")
            ax.set_xlabel(self._label(name))
            ax.set_ylabel(self._label(name2))
            result = {"counts": counts, "xedges": xedges, "yedges": yedges}
        ax.set_title(f"run {self.run}: {ok.sum()} {'events' if rows == 'event' else rows + ' trains'}")
        self.plots.finish(fig, "plotVar")
        return result

    def _scalar(self, name: str, rows: Optional[str] = None) -> np.ndarray:
        """``name`` as float64, as stored (``rows=None``) or on ``rows`` (events or a per-train group's)."""
        values = np.asarray(self[name] if rows is None else self.on_rows(name, rows))
        if values.ndim != 1:
            raise SmallDataError(f"{name!r} has shape {values.shape}; plotVar needs a scalar per row")
        return values.astype(np.float64)

    def _label(self, name: str) -> str:
        unit = self.units(name)
        return f"{name} ({unit})" if unit else name

    def pixelHistogram(self, det: str = "dssc", selection: Optional[np.ndarray] = None, max_trains: int = 10,
                       modules: Optional[Sequence[int]] = None, roi: Optional[Tuple[int, Sequence[int]]] = None,
                       bins: int = 300, value_range: Tuple[float, float] = (-1.0, 5.0), log: bool = True,
                       ax=None) -> Dict[str, np.ndarray]:
        """Histogram of the calibrated values of good pixels in the selected frames (photon peaks).

        Parameters
        ----------
        det, selection, max_trains, modules
            As for :meth:`AvImage` (the same frames, calibrated the same way).
        roi : (module, [y0, y1, x0, x1]), optional
            Only these pixels of one module.
        bins, value_range
            Histogram bins over ``value_range`` (detector units: photons with a gain).

        Returns
        -------
        dict
            ``counts``, ``edges``, ``centres``, ``peaks``: positions of the histogram's peaks
            (with the right gain near 0, 1, 2, ... photons), and ``gain_factor``: the spacing of
            the first two peaks, by which the configured gain (ADU per photon) is too small
            (1 when it is right; NaN with fewer than two peaks).
        """
        if roi is not None:
            module, box = roi
            modules = [module] if modules is None else modules
        edges = np.linspace(value_range[0], value_range[1], int(bins) + 1)
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        units = ""
        for frames, pick in self.calibrated_frames(det, selection, max_trains, modules):
            data, valid = frames.data[pick], frames.valid[pick]
            units = frames.units
            if roi is not None:
                j = frames.module_axis_index(module)
                y0, y1, x0, x1 = box
                data, valid = data[:, j, y0:y1, x0:x1], valid[:, j, y0:y1, x0:x1]
            counts += np.histogram(data[valid], bins=edges)[0]
        centres = 0.5 * (edges[1:] + edges[:-1])
        peaks = histogram_peaks(counts, centres)
        gain_factor = float(peaks[1] - peaks[0]) if len(peaks) > 1 else float("nan")
        fig, ax = self.plots.subplots(figsize=(6, 4.5), ax=ax)
        ax.stairs(counts, edges)
        for p in peaks:
            ax.axvline(p, color="r", lw=0.6, ls="--")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(f"pixel value ({units or '-'})")
        ax.set_ylabel("pixels x frames")
        ax.set_title(f"run {self.run} {det}: peaks at " + ", ".join(f"{p:.2f}" for p in peaks[:5]))
        self.plots.finish(fig, "pixelHistogram")
        return {"counts": counts, "edges": edges, "centres": centres, "peaks": peaks, "gain_factor": gain_factor,
                "units": units}
