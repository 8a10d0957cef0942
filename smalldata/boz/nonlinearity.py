"""The DSSC non-linearity: a 512-entry lookup table over the 9-bit raw values.

The table ``F`` maps a raw value to a linearised value (ADU): ``F(x) = x + d(x)``
with ``d`` the natural cubic spline through ``N`` control points spread evenly inside
``(low, high)`` and through 0 at the end points ``low`` (above the pedestals, where the
response is taken as linear) and ``high``; ``d = 0`` outside them. A pixel's corrected
signal is ``F(raw) - pedestal``. A smooth response needs a smooth table: straight
segments between the control points would leave a scalloped residual that the fit
partly absorbs by tilting the whole table, which shifts every ratio (and the flat field)
by more than its statistical error.

Ratios of the orders cannot tell the overall gain: any table times a constant
flattens them as well. ``d(low) = d(high) = 0`` fixes that freedom the way an ADC's
integral non-linearity is usually defined, as the deviation from the straight line
through the end points of the range; the gain of that line is ``photons_per_adu``.

The fit uses the empty-membrane run: with transmission 1 the ratio of the corrected
ROI sums ``n/0`` (and ``p/0``) must be the same for every pulse, whatever its
intensity. The ROI sums are linear in the control values ``d_k``::

    S_f(d) = sum_x h_f(x) (x + d(x)) - pedestal sum = L_f + H_f . d

with ``h_f`` the histogram of the frame's raw values in the ROI (good pixels only)
and ``H_f = h_f B`` its projection on the cardinal splines ``B`` of the control points.
The residuals ``S_n/S_0 - K_n`` and ``S_p/S_0 - K_p`` (``K`` fitted too) and a
penalty ``alpha * d_k`` on the deviation from a linear response are minimised with
``scipy.optimize.least_squares`` and an analytic Jacobian: seconds for 10^5 frames.
The overall scale of the ratios is the flat field's business (:mod:`.flatfield`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

import numpy as np

from smalldata.constants import DSSC_ADC_MAX
from smalldata.errors import ConfigError, DataError

N_VALUES = DSSC_ADC_MAX + 1


def control_points(n_points: int, low: float, high: float) -> np.ndarray:
    """The ``n_points`` raw values where ``d`` is fitted: evenly spread inside ``(low, high)``."""
    if n_points < 1:
        raise ConfigError("nl_points", f"need at least 1 control point, got {n_points}")
    if not 0 <= low < high <= DSSC_ADC_MAX:
        raise ConfigError("nl_low", f"need 0 <= low < high <= {DSSC_ADC_MAX}, got low={low}, high={high}")
    return np.linspace(low, high, n_points + 2)[1:-1]


def basis(n_points: int, low: float, high: float) -> np.ndarray:
    """(512, N) cardinal splines: ``d(x) = basis[x] @ d_k`` (0 at and outside ``low`` and ``high``).

    Column ``k`` is the natural cubic spline through 1 at control point ``k`` and 0 at the
    other control points and at ``low`` and ``high``; the table is linear in ``d_k``.
    """
    from scipy.interpolate import CubicSpline

    knots = np.concatenate([[low], control_points(n_points, low, high), [high]])
    x = np.arange(N_VALUES, dtype=np.float64)
    inside = (x > low) & (x < high)
    out = np.zeros((N_VALUES, n_points))
    spline = CubicSpline(knots, np.eye(n_points + 2)[:, 1:-1], bc_type="natural")
    out[inside] = spline(x[inside])
    return out


def lookup_table(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(512,) float64 ``F(x) = x + d(x)`` for control values ``values`` (ADU)."""
    values = np.asarray(values, dtype=np.float64)
    return np.arange(N_VALUES, dtype=np.float64) + basis(len(values), low, high) @ values


@dataclass
class NonLinearity:
    """A fitted non-linearity.

    Attributes
    ----------
    values : (N,) float
        ``d`` at the control points, ADU.
    errors : (N,) float
        Standard errors of ``values``: from the fit's Jacobian, or (``smd_boz``) from a jackknife
        over groups of trains (:func:`smalldata.boz.determine.jackknife`).
    low, high : float
        Raw values bounding the corrected range.
    alpha : float
        Weight of the linearity penalty.
    ratio_scale : dict
        Fitted ``K_n`` and ``K_p`` per pixel class (corrected ROI-sum ratios, before the flat field).
    n_frames : int
        Frames used.
    cost : float
        Final mean squared residual of the ratios.
    """

    values: np.ndarray
    errors: np.ndarray
    low: float
    high: float
    alpha: float
    ratio_scale: Dict[str, float] = field(default_factory=dict)
    n_frames: int = 0
    cost: float = 0.0

    @property
    def lut(self) -> np.ndarray:
        """(512,) float64 lookup table ``F``."""
        return lookup_table(self.values, self.low, self.high)

    def to_dict(self) -> dict:
        """JSON-ready description (with the table itself)."""
        return {"points": control_points(len(self.values), self.low, self.high).tolist(),
                "values": [float(v) for v in self.values], "errors": [float(v) for v in self.errors],
                "low": float(self.low), "high": float(self.high), "alpha": float(self.alpha),
                "ratio_scale": dict(self.ratio_scale), "n_frames": int(self.n_frames),
                "cost": float(self.cost), "lut": [float(v) for v in self.lut]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "NonLinearity":
        """Inverse of :meth:`to_dict`."""
        return cls(np.array(d["values"], float), np.array(d["errors"], float), float(d["low"]), float(d["high"]),
                   float(d["alpha"]), dict(d.get("ratio_scale", {})), int(d.get("n_frames", 0)),
                   float(d.get("cost", 0.0)))

    @classmethod
    def identity(cls, low: float = 0.0, high: float = DSSC_ADC_MAX) -> "NonLinearity":
        """No correction (``F(x) = x``)."""
        return cls(np.zeros(1), np.zeros(1), low, high, 0.0)


def roi_sums(hist: np.ndarray, ped_sums: np.ndarray, bas: np.ndarray):
    """``(L, H)``: linear and basis parts of the corrected ROI sums.

    Parameters
    ----------
    hist : (F, 3, [C,] 512) integer
        Raw-value histograms of each frame's n, 0, p ROI (good pixels; optionally per pixel class).
    ped_sums : (F, 3, [C]) float
        Sum of the pedestals of those pixels for the frame's memory cell.
    bas : (512, N)
        :func:`basis`.

    Returns
    -------
    L : (F, 3, [C]) float64, H : (F, 3, [C,] N) float64
    """
    h = hist.astype(np.float64)
    lin = h @ np.arange(N_VALUES, dtype=np.float64) - ped_sums
    return lin, h @ bas


def fit_nonlinearity(hist: np.ndarray, ped_sums: np.ndarray, n_points: int = 12, low: float = 100.0,
                     high: float = float(DSSC_ADC_MAX), alpha: float = 1e-11, n_bins: int = 64,
                     counts: Optional[np.ndarray] = None, max_nfev: int = 200) -> NonLinearity:
    """Fit the control values so that ``n/0`` and ``p/0`` do not depend on the intensity.

    Parameters
    ----------
    hist : (F, 3, 512) or (F, 3, C, 512) integer
        Per-frame raw-value histograms of the n, 0, p ROIs of unsaturated frames, optionally split
        into ``C`` classes of pixels (the same pixel positions in the three ROIs, e.g. by brightness);
        the ratios are taken class by class, which ties dim pixels near ``low`` to bright ones.
    ped_sums : (F, 3) or (F, 3, C) float
        Pedestal sums of those pixels (:func:`roi_sums`).
    n_points : int
        Control points ``N``.
    low, high : float
        Range of raw values corrected (``low`` above the pedestals).
    alpha : float
        Weight of the penalty ``mean_k d_k^2`` (ADU^2) against the mean squared ratio residual.
    n_bins : int
        Intensity bins (quantiles of the uncorrected ``0`` sum) whose frames are summed before the ratios.
    counts : (F,) int, optional
        When given, the rows of ``hist`` are already sums over ``counts`` frames of one intensity bin.
    max_nfev : int
        Most function evaluations of the optimiser.

    Returns
    -------
    NonLinearity
    """
    from scipy.optimize import least_squares

    if alpha < 0:
        raise ConfigError("nl_alpha", f"must be >= 0, got {alpha}")
    if hist.ndim == 3:
        hist, ped_sums = hist[:, :, None], ped_sums[:, :, None]
    n_cls = hist.shape[2]
    bas = basis(n_points, low, high)
    lin, h = roi_sums(hist, ped_sums, bas)  # (F, 3, C), (F, 3, C, N)
    if counts is None:
        # single frames: sum them in bins of intensity; the ratio of summed ROI sums has little noise, so
        # the fit is not pulled towards tables that damp the noise of single-frame ratios
        total0 = lin[:, 1].sum(axis=1)
        keep = (lin[:, 1] > 0).all(axis=1)
        lin, h, total0 = lin[keep], h[keep], total0[keep]
        n_frames = len(lin)
        n_bins = max(1, min(int(n_bins), n_frames // 2))
        edges = np.quantile(total0, np.linspace(0, 1, n_bins + 1))
        idx = np.clip(np.searchsorted(edges, total0, side="right") - 1, 0, n_bins - 1)
        counts = np.bincount(idx, minlength=n_bins)
        lin = np.stack([np.bincount(idx, v, minlength=n_bins) for v in lin.reshape(n_frames, -1).T], axis=1)
        h = np.stack([np.bincount(idx, v, minlength=n_bins) for v in h.reshape(n_frames, -1).T], axis=1)
    else:
        counts = np.asarray(counts)
        good = (counts > 0) & (lin[:, 1] > 0).all(axis=1)
        counts = np.where(good, counts, 0)
        n_frames = int(counts.sum())
        lin, h = lin.reshape(len(lin), -1), h.reshape(len(h), -1)
    if int((counts > 0).sum()) < n_points + 2:
        raise DataError(f"non-linearity fit: {n_frames} usable frames in {int((counts > 0).sum())} intensity "
                        f"bins for {n_points} control points; use fewer points (--nl-points) or more frames")
    used = counts > 0
    weight = np.sqrt(counts[used].astype(np.float64))[:, None, None]
    lin = lin[used].reshape(-1, 3, n_cls)
    h = h[used].reshape(-1, 3, n_cls, n_points)
    n_res = len(lin)
    n_groups = 2 * n_cls
    pen = np.sqrt(alpha * n_groups * n_frames / n_points)

    def split(q):
        return q[:n_points], q[n_points:].reshape(2, n_cls)

    def residuals(q):
        d, k = split(q)
        s = lin + h @ d  # (B, 3, C)
        r = weight * (s[:, 0::2] / s[:, 1:2] - k[None])  # (B, 2, C)
        return np.concatenate([r.ravel(), pen * d])

    def jacobian(q):
        d, k = split(q)
        s = lin + h @ d
        s0 = s[:, 1:2, :, None]  # (B, 1, C, 1)
        jd = weight[..., None] * (h[:, 0::2] * s0 - s[:, 0::2, :, None] * h[:, 1:2]) / (s0 * s0)
        jac = np.zeros((n_res * n_groups + n_points, n_points + n_groups))
        jac[:n_res * n_groups, :n_points] = jd.reshape(-1, n_points)
        jk = np.zeros((n_res, 2, n_cls, n_groups))
        for g in range(n_groups):
            jk[:, g // n_cls, g % n_cls, g] = -weight[:, 0, 0]
        jac[:n_res * n_groups, n_points:] = jk.reshape(-1, n_groups)
        jac[n_res * n_groups:, :n_points] = pen * np.eye(n_points)
        return jac

    ratio0 = lin[:, 0::2] / lin[:, 1:2]
    start = np.concatenate([np.zeros(n_points), np.median(ratio0, axis=0).ravel()])
    res = least_squares(residuals, start, jac=jacobian, method="trf", x_scale="jac", max_nfev=max_nfev)
    d, k = split(res.x)
    resid = res.fun[:n_res * n_groups]
    dof = max(n_res * n_groups - n_points - n_groups, 1)
    s2 = float(resid @ resid) / dof
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac) * s2
        errors = np.sqrt(np.clip(np.diag(cov)[:n_points], 0, None))
    except np.linalg.LinAlgError:
        errors = np.full(n_points, np.nan)
    scale = {"n": [float(v) for v in k[0]], "p": [float(v) for v in k[1]]}
    return NonLinearity(d, errors, float(low), float(high), float(alpha), scale, n_frames,
                        float(np.sum(resid ** 2) / n_frames))


def corrected_mean_image(pixel_hist: np.ndarray, n_frames: int, lut: np.ndarray) -> np.ndarray:
    """Mean of ``F(raw)`` per pixel from per-pixel raw histograms (..., 512) of ``n_frames`` frames."""
    if n_frames < 1:
        raise DataError("no frames for the mean image")
    return (np.asarray(pixel_hist, dtype=np.float64) @ np.asarray(lut, dtype=np.float64)) / n_frames


def intensity_deciles(values: np.ndarray, ratios: np.ndarray, n_bins: int = 10) -> Dict[str, np.ndarray]:
    """Mean ``ratios`` in ``n_bins`` quantile bins of ``values`` (the corrected ratio versus intensity)."""
    values, ratios = np.asarray(values, float), np.asarray(ratios, float)
    edges = np.quantile(values, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    mean = np.bincount(idx, ratios, minlength=n_bins) / np.maximum(counts, 1)
    centre = np.bincount(idx, values, minlength=n_bins) / np.maximum(counts, 1)
    return {"intensity": centre, "ratio": mean, "counts": counts}


def check_low(pedestal_max: Optional[float], low: float) -> None:
    """ConfigError if a good ROI pixel's pedestal reaches ``low`` (the table must be linear there)."""
    if pedestal_max is not None and pedestal_max >= low:
        raise ConfigError("nl_low", f"{low:g} ADU is not above the pedestals of the ROI pixels (up to "
                                    f"{pedestal_max:.1f} ADU); raise --nl-low")
