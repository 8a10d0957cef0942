"""X-ray absorption from a sample run and a reference run: ``-log(It / I0) / thickness``.

``It`` is the mean spectrum through the sample, ``I0`` the mean reference spectrum, both per energy
point over their trains. The standard deviation of the absorption is propagated from the trains'
relative standard deviations, ``sqrt((sd_t / It)**2 + (sd_0 / I0)**2) / thickness`` (the spread of
one train pair), and the standard error from those of the two means,
``sqrt((sd_t / It)**2 / n_t + (sd_0 / I0)**2 / n_0) / thickness``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from smalldata.errors import ConfigError, DataError


@dataclass
class XAS:
    """Absorption per energy point.

    Attributes
    ----------
    absorption, std, stderr : (M,) float64
        In 1/m when the thickness is in metres (1 when it is 1).
    it, i0 : (M,) float64
        Mean sample and reference spectra.
    n_sample, n_reference : int
        Trains averaged.
    energy : (M,) float64, optional
        Energy of each point (eV), when known.
    """

    absorption: np.ndarray
    std: np.ndarray
    stderr: np.ndarray
    it: np.ndarray
    i0: np.ndarray
    n_sample: int
    n_reference: int
    energy: Optional[np.ndarray] = None

    def take(self, index) -> "XAS":
        """The points ``index`` (a boolean mask or indices, e.g. sorting by energy)."""
        pick = lambda a: None if a is None else np.asarray(a)[index]  # noqa: E731
        return XAS(pick(self.absorption), pick(self.std), pick(self.stderr), pick(self.it), pick(self.i0),
                   self.n_sample, self.n_reference, pick(self.energy))


def xas(sample: np.ndarray, reference: np.ndarray, thickness: float = 1.0,
        energy: Optional[np.ndarray] = None) -> XAS:
    """Absorption from per-train sample and reference spectra.

    Parameters
    ----------
    sample : (N_t, M) array
        Baseline-free spectra through the sample, one per train.
    reference : (N_0, M) array
        Reference spectra (without the sample), one per train.
    thickness : float
        Sample thickness (m); 1 gives the absorbance -log(It/I0).
    energy : (M,) array, optional
        Energy of each point (eV), kept with the result.

    Returns
    -------
    XAS
    """
    if not np.isfinite(thickness) or thickness <= 0:
        raise ConfigError("thickness", f"{thickness} is not a positive thickness in metres")
    s = np.asarray(sample, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if s.ndim != 2 or r.ndim != 2 or s.shape[1] != r.shape[1] or len(s) < 2 or len(r) < 2:
        raise DataError(f"sample spectra {s.shape} and reference spectra {r.shape} must be (trains >= 2, points) "
                        "on the same energy points")
    it, i0 = s.mean(axis=0), r.mean(axis=0)
    rel_t, rel_0 = s.std(axis=0, ddof=1) / it, r.std(axis=0, ddof=1) / i0
    with np.errstate(invalid="ignore", divide="ignore"):
        absorption = -np.log(it / i0) / thickness
    std = np.sqrt(rel_t ** 2 + rel_0 ** 2) / thickness
    stderr = np.sqrt(rel_t ** 2 / len(s) + rel_0 ** 2 / len(r)) / thickness
    if energy is not None:
        energy = np.asarray(energy, dtype=np.float64)
        if energy.shape != absorption.shape:
            raise DataError(f"{energy.shape[0] if energy.ndim else 0} energies for {absorption.shape[0]} spectral "
                            "points; give one energy per point")
    return XAS(absorption, std, stderr, it, i0, len(s), len(r), energy)


def edge_position(energy: np.ndarray, absorption: np.ndarray, smooth: int = 5) -> float:
    """Energy of the steepest rise of an absorption curve (maximum of the smoothed derivative, refined
    by a parabola through the three points around it).

    Parameters
    ----------
    energy : (M,) array, increasing
    absorption : (M,) array
    smooth : int
        Width (points) of the moving average applied before differentiating.
    """
    e = np.asarray(energy, dtype=np.float64)
    a = np.convolve(np.asarray(absorption, dtype=np.float64), np.ones(smooth) / smooth, mode="same")
    d = np.gradient(a, e)
    if len(e) < 3 * smooth:
        raise DataError(f"{len(e)} energy points are too few to find an edge with smoothing over {smooth}")
    d[: smooth] = d[-smooth:] = -np.inf  # the moving average is biased there
    m = int(np.clip(np.argmax(d), smooth + 1, len(d) - smooth - 2))
    y0, y1, y2 = d[m - 1], d[m], d[m + 1]
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) if (y0 - 2 * y1 + y2) != 0 else 0.0
    return float(np.interp(m + shift, np.arange(len(e)), e))


def edge_step(energy: np.ndarray, absorption: np.ndarray, edge: float, gap: float, width: float) -> float:
    """Mean absorption in ``[edge + gap, edge + gap + width]`` minus that in ``[edge - gap - width, edge - gap]``."""
    e = np.asarray(energy, dtype=np.float64)
    a = np.asarray(absorption, dtype=np.float64)
    post = (e >= edge + gap) & (e <= edge + gap + width)
    pre = (e <= edge - gap) & (e >= edge - gap - width)
    return float(a[post].mean() - a[pre].mean())
