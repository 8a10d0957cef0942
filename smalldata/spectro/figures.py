"""Figures of the spectrometer commands (matplotlib, Agg backend, PNG files): the elastic line with
its fitted parabola, the mono-run peaks against their energies with the calibration, the XAS."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, TypeVar

import numpy as np

from smalldata.errors import SmallDataError

T = TypeVar("T")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_curvature(fit, path: os.PathLike, title: str = "") -> Path:
    """The elastic-line image (sum of the dark-subtracted frames), the line's centre per slice of
    columns and the fitted parabola; below, the centres' residuals from it (rows).

    Parameters
    ----------
    fit : smalldata.spectro.elastic.CurvatureFit
    path : path of the PNG
    title : str
    """
    plt = _pyplot()
    fig, (ax, res) = plt.subplots(2, 1, figsize=(8, 7), height_ratios=(3, 1), sharex=True)
    ny, nx = fit.image.shape
    x = np.arange(nx)
    line = fit.line_row(x)
    lo, hi = max(0, int(line.min()) - 30), min(ny, int(np.ceil(line.max())) + 30)
    shown = fit.image[lo:hi]
    vmax = np.percentile(shown, 99.5) if shown.size else 1.0
    ax.imshow(shown, origin="lower", aspect="auto", extent=(-0.5, nx - 0.5, lo - 0.5, hi - 0.5), vmin=0,
              vmax=vmax if vmax > 0 else None, cmap="viridis")
    ax.plot(x, line, color="tab:red", lw=1.2, label=f"y = {fit.y0:.2f} + {fit.curvature.c1:.4g} x + "
                                                      f"{fit.curvature.c2:.4g} x²")
    ax.plot(fit.x, fit.y, "o", ms=3, color="white", mec="k", mew=0.5, label="line centre per slice")
    ax.set_ylabel("row (dispersive)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"elastic line of run {fit.run} ({fit.n_trains} trains)")
    res.axhline(0, color="0.5", lw=0.8)
    res.plot(fit.x, fit.y - fit.line_row(fit.x), "o", ms=3, color="tab:blue")
    res.set_xlabel("column (non-dispersive)")
    res.set_ylabel("centre - fit (rows)")
    fig.tight_layout()
    return _save(fig, path)


def plot_calibration(cal, path: os.PathLike, title: str = "") -> Path:
    """Peak column of each mono run against its energy with the fitted polynomial; the residuals
    (eV); the runs' baseline-free mean spectra.

    Parameters
    ----------
    cal : smalldata.spectro.vikingruns.MonoCalibration
    path : path of the PNG
    title : str
    """
    plt = _pyplot()
    fig, (ax, res, spec) = plt.subplots(3, 1, figsize=(8, 9), height_ratios=(3, 1, 2))
    nx = cal.spectra.shape[1]
    cols = np.arange(nx, dtype=np.float64)
    terms = " + ".join(f"{c:.5g} p^{k}" if k else f"{c:.6g}" for k, c in enumerate(cal.calibration.coefficients))
    ax.plot(cols, cal.calibration(cols), color="tab:red", lw=1.2, label=f"E = {terms}")
    ax.plot(cal.peaks, cal.energies, "o", color="tab:blue", label="mono runs")
    for r, p, e in zip(cal.runs, cal.peaks, cal.energies):
        ax.annotate(str(r), (p, e), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("peak column")
    ax.set_ylabel("monochromator energy (eV)")
    ax.legend(fontsize=8)
    ax.set_title(title or f"Viking energy calibration from runs {', '.join(map(str, cal.runs))}")
    res.axhline(0, color="0.5", lw=0.8)
    res.plot(cal.peaks, cal.residuals * 1e3, "o", color="tab:blue")
    res.set_xlim(ax.get_xlim())
    res.set_ylabel("fit - mono (meV)")
    for r, s in zip(cal.runs, cal.spectra):
        spec.plot(cols, s, lw=0.8, label=str(r))
    spec.set_xlabel("column")
    spec.set_ylabel("photoelectrons")
    spec.legend(fontsize=7, ncol=4, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_xas(result, path: os.PathLike, title: str = "") -> Path:
    """The absorption against energy with its standard deviation (band) and standard error (bars),
    the edge marked; below, the mean sample and reference spectra.

    Parameters
    ----------
    result : smalldata.spectro.xasruns.XASResult
    path : path of the PNG
    title : str
    """
    plt = _pyplot()
    x = result.xas
    fig, (ax, sp) = plt.subplots(2, 1, figsize=(8, 7), height_ratios=(3, 2), sharex=True)
    ax.fill_between(x.energy, x.absorption - x.std, x.absorption + x.std, color="tab:blue", alpha=0.2,
                    label="standard deviation")
    ax.errorbar(x.energy, x.absorption, yerr=x.stderr, fmt=".", ms=3, color="tab:blue", label="standard error")
    ax.axvline(result.edge, color="tab:red", lw=1, label=f"edge {result.edge:.2f} eV, step {result.step:.3g}")
    ax.set_ylabel("absorbance" if result.thickness is None else "absorption (1/m)")
    ax.legend(fontsize=8)
    ax.set_title(title or f"XAS: sample run {result.sample_run}, reference run {result.reference_run}")
    sp.plot(x.energy, x.it, label=f"It, run {result.sample_run} ({x.n_sample} trains)")
    sp.plot(x.energy, x.i0, label=f"I0, run {result.reference_run} ({x.n_reference} trains)")
    sp.set_xlabel("energy (eV)")
    sp.set_ylabel("photoelectrons")
    sp.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def publish_with(plot: Optional[os.PathLike], draw: Callable[[Path], Path], write: Callable[[], T]) -> T:
    """Draw a figure to a hidden part file, run ``write`` (e.g. the config's new values), and only
    then put the figure at ``plot``: a refused write leaves neither. ``plot`` None: only ``write``."""
    part = None
    if plot is not None:
        plot = Path(plot).resolve()
        if not plot.parent.is_dir():
            raise SmallDataError(f"--plot {plot}: folder {plot.parent} does not exist")
        part = draw(plot.with_name(f".{plot.name}.part.png"))
    try:
        result = write()
        if part is not None:
            os.replace(part, plot)
        return result
    finally:
        if part is not None:
            part.unlink(missing_ok=True)
