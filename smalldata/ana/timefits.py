"""Time zero and beam size: error-function fits of the session (``fit_time_zero``, ``knife_edge``).

Time zero (a pump-probe signal ``y`` against the delay ``t``, ps)::

    y = offset + amplitude * S(t) * g(t),   S(t) = (1 + erf((t - t0) / (sqrt(2) sigma))) / 2
    g = 1 (after="none"), 1 + slope (t - t0) ("linear"), exp(-(t - t0) / tau) ("exponential")

The rise time is the FWHM of the Gaussian response, ``2 sqrt(2 ln 2) sigma``. Knife edge
(a transmitted intensity against the knife position ``x``)::

    y = offset + amplitude * erfc((x - x0) / (sqrt(2) sigma)) / 2

gives the rms beam size ``sigma`` (m) and its FWHM; with the pulse energy ``E`` (J) on
the sample the peak fluence of a Gaussian beam is ``F0 = E / (2 pi sigma_x sigma_y)``
(J/m^2; 1 J/m^2 = 0.1 mJ/cm^2). Errors are one standard deviation from the fit's
covariance scaled by the residual variance (each point one frame or one bin).
"""
from __future__ import annotations

import logging
import warnings
from typing import Dict, Optional

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import erf, erfc

from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)

#: FWHM of a Gaussian over its rms width.
GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
AFTER_STEP = ("none", "linear", "exponential")


def step_model(t: np.ndarray, t0: float, sigma: float, amplitude: float, offset: float, extra: float = 0.0,
               after: str = "none") -> np.ndarray:
    """The error-function step with its after-step (``extra`` is the slope, 1/ps, or tau, ps)."""
    s = 0.5 * (1.0 + erf((t - t0) / (np.sqrt(2.0) * abs(sigma))))
    if after == "linear":
        s = s * (1.0 + extra * (t - t0))
    elif after == "exponential":
        s = s * np.exp(-np.clip((t - t0) / extra, -50, 50))
    return offset + amplitude * s


def knife_model(x: np.ndarray, x0: float, sigma: float, amplitude: float, offset: float) -> np.ndarray:
    """Transmission past a knife edge at ``x`` of a Gaussian beam centred at ``x0``."""
    return offset + amplitude * 0.5 * erfc((x - x0) / (np.sqrt(2.0) * abs(sigma)))


def _finite(x, y):
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise SmallDataError(f"fit: {x.size} positions but {y.size} values; give one value per position")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _edge_guess(x: np.ndarray, y: np.ndarray):
    """(centre, width, low side level, high side level) of a step from binned medians."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    k = max(3, len(xs) // 8)
    low, high = float(np.median(ys[:k])), float(np.median(ys[-k:]))
    half = 0.5 * (low + high)
    smooth = np.convolve(ys, np.ones(k) / k, mode="same")
    inner = slice(k // 2, len(xs) - k // 2) if len(xs) > k else slice(None)
    crossing = np.flatnonzero(np.diff(np.sign(smooth[inner] - half)) != 0)
    centre = float(xs[inner][crossing[len(crossing) // 2]]) if len(crossing) else float(np.median(xs))
    width = max((xs[-1] - xs[0]) / 10.0, np.finfo(float).eps)
    return centre, width, low, high


def _fit(model, x, y, p0, what: str, fix: str):
    if len(x) < len(p0) + 2:
        raise SmallDataError(f"{what}: {len(x)} finite points for {len(p0)} parameters; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # an undetermined covariance is reported below
            popt, pcov = curve_fit(model, x, y, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        raise SmallDataError(f"{what} did not converge ({str(exc).splitlines()[0]}); {fix}") from None
    perr = np.sqrt(np.diag(pcov)) if np.all(np.isfinite(pcov)) else np.full(len(popt), np.inf)
    if not np.all(np.isfinite(perr)):
        raise SmallDataError(f"{what} did not converge (parameters undetermined: the data show no step); {fix}")
    resid = y - model(x, *popt)
    return popt, perr, float(np.sum(resid ** 2) / max(len(x) - len(popt), 1))


def fit_time_zero(delay: np.ndarray, signal: np.ndarray, after: str = "linear", t0: Optional[float] = None,
                  rise: Optional[float] = None, tau: Optional[float] = None) -> Dict[str, object]:
    """Fit an error-function step to ``signal`` against ``delay`` (ps).

    Parameters
    ----------
    delay, signal : (N,) arrays
        Per frame (or per bin); NaN pairs are left out.
    after : {"none", "linear", "exponential"}
        Shape after the step.
    t0, rise, tau : float, optional
        Start values (ps): time zero, rise time (FWHM), decay time; default from the data.

    Returns
    -------
    dict
        ``t0``, ``t0_err``, ``rise`` (FWHM), ``rise_err``, ``sigma``, ``sigma_err``,
        ``amplitude``, ``offset`` (with ``_err``), ``slope`` or ``tau`` (with ``_err``),
        ``reduced_chi2`` (residual variance), ``n``, ``after``, ``units``, ``model``.

    Raises
    ------
    SmallDataError
        Too few points, or a fit that does not converge (one line, with what to try).
    """
    if after not in AFTER_STEP:
        raise SmallDataError(f"fit_time_zero: after={after!r}; use one of {AFTER_STEP}")
    x, y = _finite(delay, signal)
    fix = "give start values (t0=..., rise=...) or select frames around the step (selection=...)"
    if len(x) < 6:
        raise SmallDataError(f"fit_time_zero: {len(x)} finite points; {fix}")
    c, w, low, high = _edge_guess(x, y)
    c = c if t0 is None else float(t0)
    sigma = w if rise is None else float(rise) / GAUSS_FWHM
    p0 = [c, sigma, high - low, low]
    if after == "linear":
        p0.append(0.0)
    elif after == "exponential":
        p0.append(float(tau) if tau is not None else float(np.ptp(x)))

    def model(t, *p):
        return step_model(t, *p[:4], p[4] if len(p) > 4 else 0.0, after=after)

    popt, perr, var = _fit(model, x, y, p0, "fit_time_zero: the error-function fit", fix)
    sig, sig_err = abs(popt[1]), perr[1]
    result: Dict[str, object] = {
        "t0": float(popt[0]), "t0_err": float(perr[0]), "sigma": float(sig), "sigma_err": float(sig_err),
        "rise": float(GAUSS_FWHM * sig), "rise_err": float(GAUSS_FWHM * sig_err),
        "amplitude": float(popt[2]), "amplitude_err": float(perr[2]), "offset": float(popt[3]),
        "offset_err": float(perr[3]), "reduced_chi2": var, "n": int(len(x)), "after": after,
        "units": {"t0": "ps", "rise": "ps (FWHM)", "sigma": "ps", "amplitude": "signal", "offset": "signal"},
        "model": lambda t: model(np.asarray(t, float), *popt)}
    if after == "linear":
        result.update(slope=float(popt[4]), slope_err=float(perr[4]))
        result["units"]["slope"] = "1/ps"
    elif after == "exponential":
        result.update(tau=float(popt[4]), tau_err=float(perr[4]))
        result["units"]["tau"] = "ps"
    return result


def fit_knife_edge(position: np.ndarray, signal: np.ndarray, position_unit: float = 1e-3) -> Dict[str, object]:
    """Fit a knife-edge scan: the beam's centre and rms width.

    Parameters
    ----------
    position, signal : (N,) arrays
        Knife position (motor units) and transmitted intensity per frame or bin.
    position_unit : float
        Metres per motor unit (1e-3 for mm).

    Returns
    -------
    dict
        ``centre``, ``sigma``, ``fwhm`` (m) with ``_err``; ``amplitude``, ``offset``,
        ``reduced_chi2``, ``n``, ``units``, ``model`` (in motor units).
    """
    x, y = _finite(position, signal)
    fix = "check the knife position and signal datasets, or select the frames of the scan (selection=...)"
    if len(x) < 6:
        raise SmallDataError(f"knife_edge: {len(x)} finite points; {fix}")
    c, w, low, high = _edge_guess(x, y)
    p0 = [c, w, low - high, high]  # erfc falls from 1 to 0: amplitude = level before the edge - after
    popt, perr, var = _fit(knife_model, x, y, p0, "knife_edge: the error-function fit", fix)
    sig = abs(popt[1]) * position_unit
    sig_err = perr[1] * position_unit
    return {"centre": float(popt[0] * position_unit), "centre_err": float(perr[0] * position_unit),
            "sigma": float(sig), "sigma_err": float(sig_err), "fwhm": float(GAUSS_FWHM * sig),
            "fwhm_err": float(GAUSS_FWHM * sig_err), "amplitude": float(popt[2]), "offset": float(popt[3]),
            "reduced_chi2": var, "n": int(len(x)),
            "units": {"centre": "m", "sigma": "m", "fwhm": "m"},
            "model": lambda t: knife_model(np.asarray(t, float), *popt)}


def peak_fluence(pulse_energy: float, sigma_x: float, sigma_y: Optional[float] = None,
                 pulse_energy_err: float = 0.0, sigma_x_err: float = 0.0,
                 sigma_y_err: Optional[float] = None) -> Dict[str, object]:
    """Peak fluence of a Gaussian beam, ``E / (2 pi sigma_x sigma_y)`` (a round beam without ``sigma_y``).

    Parameters
    ----------
    pulse_energy : float
        Pulse energy on the sample, J.
    sigma_x, sigma_y : float
        rms beam sizes, m.
    pulse_energy_err, sigma_x_err, sigma_y_err : float
        Their standard errors (relative errors added in quadrature).

    Returns
    -------
    dict
        ``fluence`` and ``fluence_err`` in J/m^2, ``fluence_mJ_cm2`` and its error, ``units``.
    """
    if sigma_y is None:
        sigma_y, sigma_y_err = sigma_x, sigma_x_err
    if not (pulse_energy >= 0 and sigma_x > 0 and sigma_y > 0):
        raise SmallDataError(f"fluence: pulse energy {pulse_energy} J and beam sizes {sigma_x}, {sigma_y} m must be "
                             "positive; fit the knife edge first")
    f0 = pulse_energy / (2.0 * np.pi * sigma_x * sigma_y)
    rel = np.sqrt((pulse_energy_err / pulse_energy if pulse_energy else 0.0) ** 2 + (sigma_x_err / sigma_x) ** 2
                  + ((sigma_y_err or 0.0) / sigma_y) ** 2)
    return {"fluence": float(f0), "fluence_err": float(f0 * rel), "fluence_mJ_cm2": float(f0 * 0.1),
            "fluence_mJ_cm2_err": float(f0 * rel * 0.1), "units": {"fluence": "J/m^2", "fluence_mJ_cm2": "mJ/cm^2"}}
