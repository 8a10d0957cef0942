"""Scans: a per-event quantity binned against a scan variable, and pump-probe plots (plotScan).

Per bin the mean is the ratio of sums ``sum(y) / sum(w)`` (``w`` = 1, or the normaliser such as
the XGM), with the standard error of a ratio estimator,
``sqrt(sum((y - R w)^2)) / sum(w)`` (for ``w`` = 1 the standard error of the mean).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from smalldata.errors import SmallDataError
from smalldata.geometry.qmap import digitize

BinsSpec = Union[None, int, Sequence[float]]


def check_bin_count(bins) -> int:
    """``bins`` as a number of bins, or a one-line error unless it is a positive integer."""
    if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, (int, np.integer, float, np.floating)) \
            or not np.isfinite(bins) or int(bins) != bins or int(bins) < 1:
        raise SmallDataError(f"bins={bins!r}: give a positive number of bins, or at least 2 increasing bin edges")
    return int(bins)


def scan_edges(x: np.ndarray, bins: BinsSpec) -> np.ndarray:
    """Bin edges: ``None`` one bin per distinct value, an int that many equal bins over the range, or edges."""
    x = x[np.isfinite(x)]
    if bins is None:
        values = np.unique(x)
        if values.size == 0:
            raise SmallDataError("no finite value of the scan variable to bin")
        if values.size == 1:
            return np.array([values[0] - 0.5, values[0] + 0.5])
        mid = 0.5 * (values[1:] + values[:-1])
        return np.concatenate([[values[0] - (mid[0] - values[0])], mid, [values[-1] + (values[-1] - mid[-1])]])
    if np.isscalar(bins):
        check_bin_count(bins)
        if x.size == 0:
            raise SmallDataError("no finite value of the scan variable to bin")
        return np.histogram_bin_edges(x, bins=int(bins))
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise SmallDataError("bins must be a number of bins or at least 2 increasing edges")
    return edges


def binned_stats(x: np.ndarray, y: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> Dict[str, np.ndarray]:
    """Ratio-of-sums mean and its standard error of ``y`` (N, ...) per bin of ``x`` (N,).

    Bin k is ``[e_k, e_k+1)``, the last also holds its right edge (so integer bins keep
    every event). Elements of ``y`` that are NaN are left out of their bin.
    """
    n_bins = len(edges) - 1
    y = np.asarray(y, dtype=np.float64)
    tail = y.shape[1:]
    y2 = y.reshape(len(y), -1)
    idx = digitize(np.asarray(x, dtype=np.float64), edges)
    w = np.asarray(weights, dtype=np.float64)
    use = (idx >= 0) & np.isfinite(w)
    idx, y2, w = idx[use], y2[use], w[use]
    finite = np.isfinite(y2)
    y0 = np.where(finite, y2, 0.0)
    w2 = np.where(finite, w[:, None], 0.0)
    k = y2.shape[1]
    flat = (idx[:, None] * k + np.arange(k)[None, :]).ravel()

    def per_bin(values):
        return np.bincount(flat, weights=values.ravel(), minlength=n_bins * k).reshape(n_bins, k)

    sums, norm = per_bin(y0), per_bin(w2)
    counts = per_bin(finite.astype(float)).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / norm
        resid = np.where(finite, y0 - mean[idx] * w[:, None], 0.0)
        err = np.sqrt(per_bin(resid ** 2)) / norm
    shape = (n_bins,) + tail
    return {"centres": 0.5 * (edges[1:] + edges[:-1]), "edges": edges, "mean": mean.reshape(shape),
            "err": err.reshape(shape), "count": np.bincount(idx, minlength=n_bins),
            "count_finite": counts.reshape(shape), "sum": sums.reshape(shape), "norm": norm.reshape(shape)}


class ScansMixin:
    """binned, labels and plotScan of ``SmallDataAna``."""

    def binned(self, name: str, by: str, bins: BinsSpec = None, selection: Optional[np.ndarray] = None,
               normalise_by: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Mean of ``name`` in bins of ``by`` (e.g. an ROI sum against the delay).

        Parameters
        ----------
        name : str
            Dataset, scalar or not (e.g. ``dssc/azav_mean`` gives a profile per bin). A per-train
            group's dataset (``viking/viking_total``) is binned row by row of its group: ``by``
            and ``normalise_by`` are then taken per row of its train (a per-event one as the mean
            over the train's frames, NaN where the train has none).
        by : str
            Scalar to bin by (e.g. ``scan/delay``), on the rows of ``name``; a per-train value
            binned with per-event ``name`` applies to every frame of its train.
        bins : None, int or sequence
            None: one bin per distinct value of ``by``; an int: that many equal bins over the
            selected range (the largest value is in the last bin); or the bin edges.
        selection : bool array, optional
            Rows to use: events, or the rows of ``name``'s group (``ana.getFilter(cut, per=cam)``).
        normalise_by : str, optional
            Divide the bin's sum of ``name`` by the sum of this dataset (e.g. the XGM).

        Returns
        -------
        dict
            ``centres``, ``edges``, ``mean`` (bins, ...), ``err`` (its standard error), ``count``
            (rows per bin), ``count_finite``, ``sum``, ``norm``.
        """
        rows = self.rows_of(name)
        y = np.asarray(self[name])
        n = len(self) if rows == "event" else len(y)
        sel = np.ones(n, bool) if selection is None else np.asarray(selection, bool)
        if sel.shape != (n,):
            raise SmallDataError(f"selection has {sel.size} entries, {name!r} {n} rows; give one per row"
                                 + ("" if rows == "event" else f" of {rows} (ana.getFilter(cut, per={rows!r}))"))
        x = np.asarray(self.on_rows(by, rows), dtype=np.float64)
        if x.ndim != 1:
            raise SmallDataError(f"{by!r} is not a scalar; bin by e.g. 'scan/delay'")
        if y.shape[:1] != x.shape:
            raise SmallDataError(f"{name!r} has {y.shape[0]} rows, not one per event ({len(x)})")
        w = np.asarray(self.on_rows(normalise_by, rows), dtype=np.float64) if normalise_by else np.ones(len(x))
        x, y, w = x[sel], y[sel], w[sel]
        return binned_stats(x, y, w, scan_edges(x, bins))

    def labels(self) -> Tuple[np.ndarray, Tuple[str, ...]]:
        """Each event's label index and the label names: the config's pattern, else pump laser on/off."""
        if "pattern/label_id" in self:
            names = self.user_data("frames/pattern").get("labels")
            if names is None:
                raise SmallDataError(f"{self.path} has /pattern/label_id but no label names in "
                                     "/UserDataCfg/frames/pattern")
            return np.asarray(self["pattern/label_id"]), tuple(str(n) for n in names)
        if "pulses/laser_on" in self:
            return np.where(np.asarray(self["pulses/laser_on"], bool), 0, 1), ("pumped", "unpumped")
        raise SmallDataError(f"{self.path} has no frame labels; add 'pattern: {{labels: [pumped, unpumped]}}' "
                             "or 'pulses: {}' to the config")

    def plotScan(self, name: str, by: str = "scan/delay", bins: BinsSpec = None,
                 labels: Sequence[str] = ("pumped", "unpumped"), normalise_by: Optional[str] = None,
                 selection: Optional[np.ndarray] = None, ax=None) -> Dict[str, object]:
        """Pumped, unpumped and their difference with standard errors against a scan variable.

        Parameters
        ----------
        name, by, bins, normalise_by, selection
            As for :meth:`binned`; one set of bins for every label.
        labels : (str, str)
            The two labels compared (pattern labels); the difference is first minus second.

        Returns
        -------
        dict
            ``centres``, one :meth:`binned` result per label, ``difference`` and
            ``difference_err`` (errors added in quadrature).
        """
        label_id, names = self.labels()
        missing = [lab for lab in labels if lab not in names]
        if missing or len(labels) != 2:
            raise SmallDataError(f"plotScan compares two labels of {list(names)}; got {list(labels)}")
        sel = np.ones(len(self), bool) if selection is None else np.asarray(selection, bool)
        x = np.asarray(self[by], dtype=np.float64)
        edges = scan_edges(x[sel], bins)
        result: Dict[str, object] = {"centres": 0.5 * (edges[1:] + edges[:-1]), "edges": edges}
        for lab in labels:
            result[lab] = self.binned(name, by, edges, sel & (label_id == names.index(lab)), normalise_by)
        first, second = (result[lab] for lab in labels)
        result["difference"] = first["mean"] - second["mean"]
        result["difference_err"] = np.hypot(first["err"], second["err"])
        if np.ndim(result["difference"]) == 1:
            self._draw_scan(result, name, by, labels, normalise_by, ax)
        return result

    def _draw_scan(self, result, name, by, labels, normalise_by, ax) -> None:
        if ax is None:
            fig, (top, bottom) = self.plots.subplots(nrows=2, figsize=(6, 6))
        else:
            fig, top, bottom = ax.figure, ax, None
        centres = result["centres"]
        for lab in labels:
            top.errorbar(centres, result[lab]["mean"], yerr=result[lab]["err"], marker="o", capsize=3, label=lab)
        ylabel = name + (f" / {normalise_by}" if normalise_by else "")
        top.set_ylabel(ylabel)
        top.legend()
        top.set_title(f"run {self.run}: {name} against {by}")
        if bottom is not None:
            bottom.errorbar(centres, result["difference"], yerr=result["difference_err"], marker="o", capsize=3,
                            color="k")
            bottom.axhline(0, color="grey", lw=0.5)
            bottom.set_ylabel(f"{labels[0]} - {labels[1]}")
            bottom.set_xlabel(f"{by} ({self.units(by) or '-'})")
        self.plots.finish(fig, "plotScan")
