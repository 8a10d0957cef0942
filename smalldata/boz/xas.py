"""XAS binning of BOZ ROI sums: spectra versus photon energy or delay, per frame label, and differences.

A spectrum bins frames by a scan variable (mono energy, delay) and estimates in each
bin the transmission ``sig/ref`` (e.g. ``n/0``) with three estimators, as the SCS
ToolBox's ``snr`` does:

- ``direct``: ratio of the sums, ``sum(sig) / sum(ref)``;
- ``weighted``: least-squares slope through the origin, ``sum(sig ref) / sum(ref^2)``
  (frames weighted by their intensity squared);
- ``mean``: mean of the per-frame ratios.

Each gives ``mean``, ``std`` (scatter of one frame's ratio), ``stderr`` and ``counts`` per
bin. For ``direct`` and ``weighted`` the scatter is that of the residuals
``sig - mean * ref`` relative to the mean (resp. root-mean-square) reference: the delta
method for a ratio estimator. ``quantity="absorbance"`` reports ``-ln(T)`` with
``std`` and ``stderr`` divided by ``T``. Differences of two labels (pumped minus
unpumped) add the standard errors in quadrature.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np

from smalldata.errors import DataError

METHODS = ("direct", "weighted", "mean")
QUANTITIES = ("transmission", "absorbance")


def _bin_index(x: np.ndarray, bins) -> tuple:
    """(index per frame, -1 outside; bin centres) for ``bins``: edges, a count, or ``"unique"``."""
    if isinstance(bins, str):
        if bins != "unique":
            raise DataError(f"bins {bins!r}: give bin edges, a number of bins or 'unique'")
        finite = np.isfinite(x)
        centres = np.unique(x[finite])
        idx = np.full(len(x), -1)
        idx[finite] = np.searchsorted(centres, x[finite])
        return idx, centres
    if np.ndim(bins) == 0:
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            raise DataError("no finite scan values to bin")
        edges = np.linspace(finite.min(), finite.max(), int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = len(edges) - 2
    idx[(idx < 0) | (idx >= len(edges) - 1) | ~np.isfinite(x)] = -1
    return idx, 0.5 * (edges[:-1] + edges[1:])


def estimate(sig: np.ndarray, ref: np.ndarray, method: str = "direct") -> Dict[str, float]:
    """``mean``, ``std``, ``stderr`` and ``counts`` of the transmission ``sig/ref`` of a set of frames."""
    sig, ref = np.asarray(sig, np.float64), np.asarray(ref, np.float64)
    n = len(sig)
    if n == 0:
        return {"mean": np.nan, "std": np.nan, "stderr": np.nan, "counts": 0}
    if method == "direct":
        mu = sig.sum() / ref.sum()
        scale = ref.mean()
    elif method == "weighted":
        mu = (sig * ref).sum() / (ref * ref).sum()
        scale = np.sqrt((ref * ref).mean())
    elif method == "mean":
        r = sig / ref
        mu = r.mean()
        std = r.std(ddof=1) if n > 1 else np.nan
        return {"mean": mu, "std": std, "stderr": std / np.sqrt(n), "counts": n}
    else:
        raise DataError(f"unknown estimator {method!r}; use one of {', '.join(METHODS)}")
    std = np.sqrt(((sig - mu * ref) ** 2).sum() / (n - 1)) / scale if n > 1 else np.nan
    return {"mean": mu, "std": std, "stderr": std / np.sqrt(n), "counts": n}


def spectrum(sig: np.ndarray, ref: np.ndarray, x: np.ndarray, bins: Union[str, int, Sequence[float]] = "unique",
             selection: Optional[np.ndarray] = None, methods: Sequence[str] = METHODS,
             quantity: str = "transmission") -> Dict[str, object]:
    """A spectrum: the transmission ``sig/ref`` (or absorbance) binned in ``x``.

    Parameters
    ----------
    sig, ref : (F,) arrays
        Per-frame ROI sums (e.g. ``n`` and ``0``).
    x : (F,) array
        Scan variable per frame (photon energy in eV, delay in mm).
    bins : "unique", int or edges
        One bin per distinct ``x``, a number of equal bins, or bin edges.
    selection : (F,) bool, optional
        Frames to use (e.g. unsaturated and of one label); non-finite sums are always left out.
    methods : sequence of str
        Estimators (``direct``, ``weighted``, ``mean``).
    quantity : {"transmission", "absorbance"}

    Returns
    -------
    dict
        ``x`` (bin centres), ``counts``, and per method a dict of arrays ``mean``, ``std``, ``stderr``.
    """
    if quantity not in QUANTITIES:
        raise DataError(f"quantity {quantity!r}: use one of {', '.join(QUANTITIES)}")
    sig, ref, x = (np.asarray(a, np.float64) for a in (sig, ref, x))
    if not len(sig) == len(ref) == len(x):
        raise DataError(f"sig, ref and x differ in length ({len(sig)}, {len(ref)}, {len(x)})")
    use = np.isfinite(sig) & np.isfinite(ref) & (ref > 0)
    if selection is not None:
        use &= np.asarray(selection, bool)
    idx, centres = _bin_index(x, bins)
    idx = np.where(use, idx, -1)
    out: Dict[str, object] = {"x": centres, "counts": np.bincount(idx[idx >= 0], minlength=len(centres)),
                              "quantity": quantity}
    for method in methods:
        stats = [estimate(sig[idx == b], ref[idx == b], method) for b in range(len(centres))]
        arr = {k: np.array([s[k] for s in stats], np.float64) for k in ("mean", "std", "stderr")}
        if quantity == "absorbance":
            t = arr["mean"]
            with np.errstate(divide="ignore", invalid="ignore"):
                arr = {"mean": -np.log(t), "std": arr["std"] / t, "stderr": arr["stderr"] / t}
        out[method] = arr
    return out


def difference(a: Dict[str, object], b: Dict[str, object]) -> Dict[str, object]:
    """``a - b`` of two spectra on the same bins (means subtract, standard errors add in quadrature)."""
    if len(a["x"]) != len(b["x"]) or not np.allclose(a["x"], b["x"], equal_nan=True):
        raise DataError("the two spectra have different bins; bin them with the same edges")
    out: Dict[str, object] = {"x": a["x"], "counts": np.minimum(a["counts"], b["counts"]), "quantity": a["quantity"]}
    for method in METHODS:
        if method in a and method in b:
            out[method] = {"mean": a[method]["mean"] - b[method]["mean"],
                           "std": np.hypot(a[method]["std"], b[method]["std"]),
                           "stderr": np.hypot(a[method]["stderr"], b[method]["stderr"])}
    return out


def spectra_by_label(sig, ref, x, label_id: np.ndarray, labels: Sequence[str], bins="unique",
                     selection: Optional[np.ndarray] = None, methods: Sequence[str] = METHODS,
                     quantity: str = "transmission", difference_of: Optional[Sequence[str]] = None) -> Dict:
    """One spectrum per frame label (same bins), and ``difference_of[0] - difference_of[1]``.

    ``difference_of`` defaults to ``("pumped", "unpumped")`` when both labels exist. Labels
    containing ``dark`` are skipped. The bins are fixed from all selected frames first.
    """
    x = np.asarray(x, np.float64)
    label_id = np.asarray(label_id)
    base = np.ones(len(x), bool) if selection is None else np.asarray(selection, bool)
    if isinstance(bins, str) or np.ndim(bins) == 0:
        _, centres = _bin_index(x[base & np.isfinite(x)], bins)
        if isinstance(bins, str):
            edges = np.concatenate([[-np.inf], 0.5 * (centres[1:] + centres[:-1]), [np.inf]])
        else:
            finite = x[base & np.isfinite(x)]
            edges = np.linspace(finite.min(), finite.max(), int(bins) + 1)
    else:
        edges = np.asarray(bins, np.float64)
    out = {}
    for i, label in enumerate(labels):
        if "dark" in label.lower():
            continue
        res = spectrum(sig, ref, x, edges, base & (label_id == i), methods, quantity)
        if isinstance(bins, str):
            res["x"] = centres
        out[label] = res
    if difference_of is None and "pumped" in out and "unpumped" in out:
        difference_of = ("pumped", "unpumped")
    if difference_of is not None:
        first, second = difference_of
        if first not in out or second not in out:
            raise DataError(f"labels {first!r} and {second!r} are not both in {list(out)}")
        out["difference"] = difference(out[first], out[second])
    return out


def fit_edge(energy: np.ndarray, absorbance: np.ndarray, stderr: np.ndarray, guess: Optional[Sequence] = None):
    """Fit ``pre + step * (1 + erf((E - E0) / width)) / 2`` to an absorbance spectrum.

    Returns
    -------
    dict
        ``pre``, ``step``, ``energy``, ``width`` and their standard errors (``*_err``).
    """
    from scipy.optimize import curve_fit
    from scipy.special import erf

    e, a, s = (np.asarray(v, np.float64) for v in (energy, absorbance, stderr))
    ok = np.isfinite(a) & np.isfinite(s) & (s > 0)
    e, a, s = e[ok], a[ok], s[ok]
    if len(e) < 5:
        raise DataError(f"an edge fit needs at least 5 energies with data, got {len(e)}")

    def model(x, pre, step, e0, width):
        return pre + step * 0.5 * (1.0 + erf((x - e0) / width))

    if guess is None:
        guess = (a.min(), a.max() - a.min(), e[np.argmin(np.abs(a - 0.5 * (a.min() + a.max())))],
                 max((e.max() - e.min()) / 10, 1e-6))
    popt, pcov = curve_fit(model, e, a, p0=guess, sigma=s, absolute_sigma=True, maxfev=10000)
    err = np.sqrt(np.diag(pcov))
    names = ("pre", "step", "energy", "width")
    return {**{k: float(v) for k, v in zip(names, popt)}, **{f"{k}_err": float(v) for k, v in zip(names, err)}}
