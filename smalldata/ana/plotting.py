"""Figures of the interactive session: matplotlib on demand, PNGs in headless mode, mouse input.

Every plot of :class:`~smalldata.ana.session.SmallDataAna` goes through a :class:`PlotOutput`:
it makes the figure, and when a folder is set (``runSmallDataAna --save-dir``, or a
non-interactive backend such as ``MPLBACKEND=Agg``) writes it as a PNG and logs the path on the
``smalldata.ana.plots`` logger, which the command line prints to the terminal.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)
#: matplotlib backends that draw into files, not windows
NON_INTERACTIVE_BACKENDS = ("agg", "pdf", "ps", "svg", "cairo", "template")
#: logger that announces each written PNG (the command line prints its messages as they are)
plots_log = logging.getLogger("smalldata.ana.plots")


def pyplot():
    """``matplotlib.pyplot``, or a one-line error naming the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SmallDataError("plotting needs matplotlib (a dependency of smalldata): pip install matplotlib") from None
    return plt


def backend_is_interactive() -> bool:
    """Whether matplotlib's current backend opens windows (False for Agg, pdf, svg, ...)."""
    import matplotlib

    backend = matplotlib.get_backend().lower()
    return not (backend in NON_INTERACTIVE_BACKENDS or backend.startswith("module://matplotlib_inline"))


class PlotOutput:
    """Where the session's figures go.

    Parameters
    ----------
    save_dir : path, optional
        Write every figure as ``<save_dir>/<NNN>_<name>.png``; None: only show them.
    dpi : int
        Resolution of the PNGs.
    """

    def __init__(self, save_dir: Optional[Path] = None, dpi: int = 80):
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.dpi = int(dpi)
        self.count = 0
        self.last_path: Optional[Path] = None

    def subplots(self, ncols: int = 1, nrows: int = 1, figsize: Tuple[float, float] = (6.0, 4.5), ax=None):
        """A new figure with its axes, or the figure of ``ax`` when the caller gives one."""
        if ax is not None:
            return ax.figure, ax
        plt = pyplot()
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=True)
        return fig, axes

    def finish(self, fig, name: str) -> Optional[Path]:
        """Draw ``fig``; in headless mode write it as a PNG and announce its path."""
        fig.tight_layout()
        if self.save_dir is None:
            if backend_is_interactive():
                fig.canvas.draw_idle()
            return None
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.count += 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        path = self.save_dir / f"{self.count:03d}_{safe}.png"
        fig.savefig(path, dpi=self.dpi)
        self.last_path = path
        plots_log.info("plot written to %s", path)
        if not backend_is_interactive():
            pyplot().close(fig)
        return path


def click_points(fig, n: int, what: str, how: str) -> np.ndarray:
    """``n`` mouse clicks on ``fig`` as (row, column) pairs (``n = -1``: until Enter).

    Only in an interactive backend; otherwise a one-line error saying which argument gives
    the same input (``how``).
    """
    if not backend_is_interactive():
        raise SmallDataError(f"{what} needs mouse clicks in a window (matplotlib backend "
                             f"{__import__('matplotlib').get_backend()!r}); give {how} instead")
    log.info("%s: click %s on the figure%s", what, f"{n} points" if n > 0 else "points",
             "" if n > 0 else ", Enter to finish")
    points = fig.ginput(n, timeout=0)
    if not points:
        raise SmallDataError(f"{what}: no point was clicked")
    return np.array([(y, x) for x, y in points], dtype=float)


#: Default colour limits of images: these percentiles of the drawn values (a bright patch
#: smaller than 1 % of the pixels does not set the scale).
IMAGE_PERCENTILES = (1.0, 99.0)


def robust_limits(values: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None,
                  percentiles: Sequence[float] = IMAGE_PERCENTILES, full_range: bool = False) -> Tuple[float, float]:
    """Colour limits: the given ones, else ``percentiles`` of the finite values (min and max with ``full_range``)."""
    finite = np.asarray(values)[np.isfinite(values)]
    lo_pct, hi_pct = (0.0, 100.0) if full_range else (float(percentiles[0]), float(percentiles[1]))
    if not 0 <= lo_pct < hi_pct <= 100:
        raise SmallDataError(f"percentiles={tuple(percentiles)}: give (low, high) with 0 <= low < high <= 100")
    lo, hi = np.percentile(finite, [lo_pct, hi_pct]) if finite.size else (0.0, 1.0)
    return (float(vmin) if vmin is not None else float(lo)), (float(vmax) if vmax is not None else float(hi))
