"""The Viking spectrometer (Andor Newton camera): spectra in photoelectrons, baseline, calibration.

The camera's preamp gain setting (CONTROL ``preampGain.value``: 0, 1, 2) is a gain of 1, 2, 4, and
its sensitivity mode (``HighCapacity.value``: 0 = high sensitivity, 1 = high capacity) picks the
table of photoelectrons per count. The values are those the SCS ToolBox documents (Andor's data
sheet, high-sensitivity values corrected by the SCS team from measured runs); see
docs/detectors/viking.md.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import CalibrationError, DataError

from .calibration import EnergyCalibration

#: preampGain setting -> gain
PREAMP_GAIN = {0: 1, 1: 2, 2: 4}
#: photoelectrons per count by gain, high sensitivity (HighCapacity = 0) and high capacity (1)
PE_PER_COUNT = {0: {1: 4.0, 2: 2.05, 4: 0.97}, 1: {1: 17.9, 2: 9.0, 4: 4.5}}


def photoelectrons_per_count(preamp_gain: int, high_capacity: int) -> float:
    """Photoelectrons per count of the Newton camera.

    Parameters
    ----------
    preamp_gain : int
        The ``preampGain.value`` setting, 0, 1 or 2 (gain 1, 2, 4).
    high_capacity : int
        The ``HighCapacity.value`` setting, 0 (high sensitivity) or 1 (high capacity).
    """
    if int(preamp_gain) != preamp_gain or int(preamp_gain) not in PREAMP_GAIN:
        raise CalibrationError(f"Newton preampGain {preamp_gain!r} is not a known setting; expected 0, 1 or 2 "
                               "(gain 1, 2, 4)")
    if int(high_capacity) != high_capacity or int(high_capacity) not in PE_PER_COUNT:
        raise CalibrationError(f"Newton HighCapacity {high_capacity!r} is not a known mode; expected 0 (high "
                               "sensitivity) or 1 (high capacity)")
    return PE_PER_COUNT[int(high_capacity)][PREAMP_GAIN[int(preamp_gain)]]


def spectrum(frames: np.ndarray, dark: np.ndarray, pe_per_count: float,
             rows: Optional[Tuple[int, int]] = None, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Spectrum per frame in photoelectrons: dark-subtracted and summed over the non-dispersive rows.

    Parameters
    ----------
    frames : (N, ny, nx) array
        Raw images (ADU); columns are the dispersive axis.
    dark : (ny, nx) array
        Mean dark image (ADU).
    pe_per_count : float
        :func:`photoelectrons_per_count`.
    rows : (first, stop), optional
        Rows to sum (the spectrum's band on the camera).
    mask : (ny, nx) bool, optional
        True = good pixel; bad pixels count as 0.

    Returns
    -------
    (N, nx) float64 photoelectrons
    """
    frames = np.asarray(frames)
    dark = np.asarray(dark, dtype=np.float64)
    if frames.shape[1:] != dark.shape:
        raise CalibrationError(f"dark image {dark.shape[0]}x{dark.shape[1]}, frames {frames.shape[1]}x{frames.shape[2]}; "
                               "use the dark of the same camera and region")
    r0, r1 = rows if rows is not None else (0, dark.shape[0])
    data = frames[:, r0:r1].astype(np.float64) - dark[r0:r1]
    if mask is not None:
        data *= np.asarray(mask, bool)[r0:r1]
    return data.sum(axis=1) * float(pe_per_count)


def remove_baseline(x: np.ndarray, spectra: np.ndarray, signal_range: Tuple[float, float],
                    degree: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    """Subtract a polynomial baseline fitted outside the signal range, spectrum by spectrum.

    Parameters
    ----------
    x : (M,) array
        Axis (pixels or eV).
    spectra : (M,) or (N, M) array
    signal_range : (low, high)
        Interval of x holding the signal; the baseline is fitted to the rest.
    degree : int

    Returns
    -------
    corrected, baseline : arrays of the shape of ``spectra``
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.asarray(spectra, dtype=np.float64)
    outside = (x < signal_range[0]) | (x > signal_range[1])
    if outside.sum() <= degree + 1:
        raise DataError(f"only {int(outside.sum())} points lie outside the signal range {tuple(signal_range)}; a "
                        f"baseline of degree {degree} needs more: narrow the signal range or lower the degree")
    two_d = s.ndim == 2
    y = s.T if two_d else s
    scale = max(abs(x[outside]).max(), 1.0)
    coef = np.polynomial.polynomial.polyfit(x[outside] / scale, y[outside], degree)
    base = np.polynomial.polynomial.polyval(x / scale, coef)
    base = base if two_d else base.ravel()
    return s - base, base


def peak_position(x: np.ndarray, spec: np.ndarray) -> float:
    """Position of a spectrum's highest peak, between grid points: the vertex of the parabola through
    the logarithm of the maximum and its two neighbours (exact for a Gaussian peak); the centre of
    mass of the three points where one of them is not positive.

    Parameters
    ----------
    x : (M,) array, evenly spaced
    spec : (M,) array
        Baseline-free spectrum.
    """
    x = np.asarray(x, dtype=np.float64)
    spec = np.asarray(spec, dtype=np.float64)
    m = int(np.clip(np.argmax(spec), 1, len(spec) - 2))
    y0, y1, y2 = spec[m - 1:m + 2]
    if min(y0, y1, y2) > 0:
        l0, l1, l2 = np.log([y0, y1, y2])
        curv = l0 - 2 * l1 + l2
        shift = 0.5 * (l0 - l2) / curv if curv < 0 else 0.0
    else:
        w = np.clip([y0, y1, y2], 0, None)
        shift = float(np.dot(w, [-1, 0, 1]) / w.sum()) if w.sum() > 0 else 0.0
    return float(x[m] + shift * (x[1] - x[0]))


def calibrate_from_mono(spectra: Sequence[np.ndarray], energies: Sequence[float], degree: int = 2) -> Tuple[EnergyCalibration, np.ndarray]:
    """Pixel-to-energy polynomial from monochromator runs: the peak pixel of each run against its energy.

    Parameters
    ----------
    spectra : sequence of (nx,) arrays
        Mean baseline-free spectrum of each run.
    energies : sequence of float
        Monochromator energy of each run (eV).
    degree : int
        Polynomial degree (2 for the Viking).

    Returns
    -------
    calibration : EnergyCalibration
        Over the camera's columns; refused if not monotonic there.
    peaks : (R,) float64
        Peak pixel of each run.
    """
    if len(spectra) != len(energies) or len(spectra) < degree + 1:
        raise DataError(f"{len(spectra)} spectra for {len(energies)} energies; a polynomial of degree {degree} "
                        f"needs at least {degree + 1} monochromator runs, one spectrum each")
    nx = len(spectra[0])
    pixels = np.arange(nx, dtype=np.float64)
    peaks = np.array([peak_position(pixels, s) for s in spectra])
    return EnergyCalibration.fit(peaks, energies, degree, (0.0, float(nx - 1))), peaks
