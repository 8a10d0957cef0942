"""Diagnostic figures of a BOZ correction determination (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List

import numpy as np

from smalldata.boz import ORDERS
from smalldata.boz.flatfield import fit_domain, ratio_images

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rois(ax, mean_image: np.ndarray, rois, threshold: float) -> None:
    """The mean image with the three ROI boxes."""
    finite = mean_image[np.isfinite(mean_image)]
    vmax = np.percentile(finite, 99.8) if finite.size else 1.0
    ax.imshow(mean_image, origin="lower", vmin=0, vmax=vmax, aspect="auto", cmap="viridis")
    for order, color in zip(ORDERS, ("tab:red", "white", "tab:orange")):
        y0, y1, x0, x1 = rois[order]
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=color, lw=1.2)
        ax.text(x0, y1 + 1, order, color=color)
    ax.set_title(f"dark-corrected mean image, ROIs (threshold {threshold:g} ADU)")
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def write_figures(det, folder: Path, stem: str) -> List[Path]:
    """Write the four diagnostic PNGs of a :class:`~smalldata.boz.determine.Determination`; return their paths."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corr = det.corrections
    paths = []

    fig, ax = plt.subplots(figsize=(10, 3.5))
    plot_rois(ax, det.mean_image, corr.rois, corr.settings.get("rois_threshold", float("nan")))
    paths.append(_save(fig, folder / f"{stem}_rois.png", plt))

    ff = corr.flat_field
    ratios, products = ratio_images(det.mean_unsaturated["corrected"], corr.rois)
    domain = fit_domain(ratios, products, ff.prod_th, ff.ratio_th)
    planes = ff.planes(ratios["n"].shape)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for row, order in enumerate(("n", "p")):
        r = ratios[order]
        lo, hi = np.nanpercentile(r, [2, 98]) if np.isfinite(r).any() else (0, 1)
        axes[row, 0].imshow(r, origin="lower", vmin=lo, vmax=hi, aspect="auto")
        axes[row, 0].set_title(f"{order}/0 ratio image")
        axes[row, 1].imshow(domain[order], origin="lower", aspect="auto", cmap="gray")
        axes[row, 1].set_title(f"fit domain ({int(domain[order].sum())} pixels)")
        im = axes[row, 2].imshow(np.where(domain[order], r / planes[order] - 1, np.nan), origin="lower",
                                 aspect="auto", cmap="RdBu_r", vmin=-0.02, vmax=0.02)
        p = getattr(ff, order)
        axes[row, 2].set_title(f"residual to plane {p[0]:.4f} {p[1]:+.2e} x {p[2]:+.2e} y")
        fig.colorbar(im, ax=axes[row, 2])
    paths.append(_save(fig, folder / f"{stem}_flatfield.png", plt))

    nl = corr.nonlinearity
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(512)
    ax.plot(x, nl.lut - x, label="F(x) - x")
    from smalldata.boz.nonlinearity import control_points

    ax.errorbar(control_points(len(nl.values), nl.low, nl.high), nl.values, nl.errors, fmt="o", ms=3,
                label="control points")
    if det.roi_data is not None:
        hist = det.roi_data.pixel_hist.sum(axis=(0, 1)).astype(float)
        ax2 = ax.twinx()
        ax2.semilogy(x, np.maximum(hist, 0.5), color="0.7", lw=0.8)
        ax2.set_ylabel("pixel values (unsaturated frames)")
    ax.set_xlabel("raw value (ADU)")
    ax.set_ylabel("correction (ADU)")
    ax.legend(loc="upper left")
    ax.set_title("non-linearity lookup table")
    paths.append(_save(fig, folder / f"{stem}_nonlinearity.png", plt))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, order in zip(axes, ("n", "p")):
        for label, style in (("before", "o--"), ("after", "o-")):
            d: Dict[str, np.ndarray] = det.deciles[order][label]
            ax.plot(d["intensity"], d["ratio"], style, label=label)
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_xlabel("0 order ROI sum (ADU)")
        ax.set_title(f"{order}/0 (relative) in intensity deciles")
        ax.legend()
    axes[0].set_ylabel("ratio / ratio of all frames")
    paths.append(_save(fig, folder / f"{stem}_ratios.png", plt))
    return paths


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    log.info("wrote %s", path)
    return path
