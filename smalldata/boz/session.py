"""BOZ XAS in the interactive session: :meth:`SmallDataAna.xas` and :meth:`SmallDataAna.plotXAS`."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import h5py
import numpy as np

from smalldata.boz.xas import METHODS, spectra_by_label, spectrum
from smalldata.errors import DataError, SmallDataError


def frame_labels(path) -> list:
    """The frame labels of an output file (``/UserDataCfg/frames/pattern`` attribute ``labels``)."""
    with h5py.File(path, "r") as f:
        node = f.get("UserDataCfg/frames/pattern")
        if node is None or "labels" not in node.attrs:
            return []
        return [v.decode() if isinstance(v, bytes) else str(v) for v in node.attrs["labels"]]


def xas(ana, scan: str = "scan/photon_energy", det: str = "dssc", func: str = "boz", order: str = "n",
        bins: Union[str, int, Sequence[float]] = "unique", quantity: str = "absorbance",
        methods: Sequence[str] = METHODS, by_label: bool = True, selection: Optional[np.ndarray] = None,
        include_saturated: bool = False) -> Dict:
    """Binned XAS of a run's boz outputs (see :meth:`SmallDataAna.xas`)."""
    if order not in ("n", "p"):
        raise SmallDataError(f"order {order!r}: use 'n' or 'p' (the transmitted order; '0' is the reference)")
    sig, ref = ana[f"{det}/{func}_sum_{order}"], ana[f"{det}/{func}_sum_0"]
    sel = np.ones(len(sig), bool) if selection is None else np.asarray(selection, bool)
    if not include_saturated:
        sel = sel & ~ana[f"{det}/{func}_saturated"].astype(bool)
    x = ana[scan]
    labels = frame_labels(ana.path) if by_label else []
    if labels and "pattern/label_id" in ana.keys():
        out = spectra_by_label(sig, ref, x, ana["pattern/label_id"], labels, bins, sel, methods, quantity)
    else:
        out = {"all": spectrum(sig, ref, x, bins, sel, methods, quantity)}
    out["scan"] = scan
    return out


def plot_xas(result: Dict, method: str = "direct", ax=None):
    """Plot the spectra of :func:`xas` (and their difference on a second axis) with standard errors."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SmallDataError("plotting needs matplotlib: pip install 'smalldata[interactive]'") from None
    spectra = {k: v for k, v in result.items() if isinstance(v, dict) and "x" in v}
    if not spectra:
        raise DataError("nothing to plot: give the result of ana.xas()")
    diff = spectra.pop("difference", None)
    if ax is None:
        _, axes = plt.subplots(2 if diff is not None else 1, 1, figsize=(7, 6 if diff is not None else 4),
                               sharex=True, squeeze=False)
        ax, ax_diff = axes[0, 0], (axes[1, 0] if diff is not None else None)
    else:
        ax_diff = ax.twinx() if diff is not None else None
    for label, s in spectra.items():
        ax.errorbar(s["x"], s[method]["mean"], s[method]["stderr"], fmt="o-", ms=3, label=label)
    quantity = next(iter(spectra.values()))["quantity"]
    ax.set_ylabel(quantity)
    ax.legend()
    if diff is not None:
        ax_diff.errorbar(diff["x"], diff[method]["mean"], diff[method]["stderr"], fmt="s-", ms=3, color="k")
        ax_diff.axhline(0, color="0.6", lw=0.8)
        ax_diff.set_ylabel("difference")
    (ax_diff or ax).set_xlabel(result.get("scan", "scan"))
    return ax
