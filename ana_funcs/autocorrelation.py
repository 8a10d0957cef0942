"""Mask-normalised spatial autocorrelation of a region, speckle contrast and speckle size.

For each frame, with ``I`` the pixel values and ``w`` the validity (1 good, 0 bad)::

    g2(d) = A_II(d) * A_ww(d) / (S(d) * S(-d))
    A_II(d) = sum_r w(r) I(r) w(r+d) I(r+d)     A_ww(d) = sum_r w(r) w(r+d)
    S(d)    = sum_r w(r) I(r) w(r+d)

i.e. ``<I(r) I(r+d)> / (<I>_r <I>_{r+d})`` over the pixel pairs that are both valid. All
sums are FFT correlations of the zero-padded batch (one ``rfft2`` over the frames; the
padding of ``max lag`` pixels prevents wrap-around). The excess ``g2 - 1`` near zero lag
is fitted, leaving out the zero lag (shot noise and electronic noise add to it only), by

    g2(dx, dy) - 1 = beta * exp(-dx^2 / (2 sx^2) - dy^2 / (2 sy^2))

as a weighted linear least-squares fit of ``log(g2 - 1)`` (weights ``(g2 - 1)^2``) on
the lags with ``0 < dx^2 + dy^2 <= fit_radius^2``, solved for all frames at once.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import fft as sfft

from smalldata.errors import ConfigError
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames

from .droplet_params import check_count
from .roi import check_module_roi, check_roi_on, check_roi_on_type, crop_module


def _conj_times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``conj(a) * b`` from real operations, so every element is rounded the same way whatever
    the array length (numpy's complex product may round its SIMD and scalar paths differently,
    which would make outputs depend on the batch)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.complex128)
    out.real = a.real * b.real + a.imag * b.imag
    out.imag = a.real * b.imag - a.imag * b.real
    return out


def autocorrelation(data: np.ndarray, valid: np.ndarray, max_lag: int) -> np.ndarray:
    """Mask-normalised autocorrelation ``g2`` for lags ``-max_lag..max_lag``.

    Parameters
    ----------
    data, valid : ndarray (N, h, w)
        Pixel values and validity (True = good).
    max_lag : int
        Largest lag (pixels) along each axis.

    Returns
    -------
    ndarray (N, 2 max_lag + 1, 2 max_lag + 1) float64
        ``g2[:, max_lag + dy, max_lag + dx]``; NaN where no valid pixel pair exists.
    """
    n, h, w = data.shape
    shape = (sfft.next_fast_len(h + max_lag, real=True), sfft.next_fast_len(w + max_lag, real=True))
    weight = valid.astype(np.float64)
    signal = np.where(valid, data, 0).astype(np.float64)
    f_sig = sfft.rfft2(signal, s=shape)
    if n > 1 and (valid == valid[:1]).all():
        f_w = sfft.rfft2(weight[:1], s=shape)  # same mask in every frame: one transform
    else:
        f_w = sfft.rfft2(weight, s=shape)
    lags = np.arange(-max_lag, max_lag + 1)
    rows, cols = lags % shape[0], lags % shape[1]

    def corr(spectrum):
        full = sfft.irfft2(spectrum, s=shape)
        return full[:, rows][:, :, cols]

    a_ii = corr(_conj_times(f_sig, f_sig))
    a_ww = corr(_conj_times(f_w, f_w))
    s_pos = corr(_conj_times(f_sig, f_w))
    s_neg = s_pos[:, ::-1, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        g2 = a_ii * a_ww / (s_pos * s_neg)
    return np.where(a_ww > 0.5, g2, np.nan)  # no valid pixel pair at that lag


def fit_speckle(g2: np.ndarray, fit_radius: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``beta * exp(-dx^2/(2 sx^2) - dy^2/(2 sy^2))`` to ``g2 - 1`` without the zero lag.

    Parameters
    ----------
    g2 : ndarray (N, 2L + 1, 2L + 1)
        Autocorrelation, zero lag in the centre; ``L >= fit_radius``.
    fit_radius : int
        Lags with ``0 < dx^2 + dy^2 <= fit_radius^2`` enter the fit.

    Returns
    -------
    beta, sx, sy : ndarray (N,)
        Contrast and Gaussian widths (pixels) along columns (x) and rows (y); NaN when
        fewer than three lags have ``g2 > 1`` or the peak does not decrease.
    """
    half = (g2.shape[-1] - 1) // 2
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    d2 = dx ** 2 + dy ** 2
    sel = (d2 > 0) & (d2 <= fit_radius ** 2)
    design = np.stack([np.ones(sel.sum()), -0.5 * dx[sel] ** 2, -0.5 * dy[sel] ** 2])  # (3, K)
    excess = g2[:, sel] - 1.0  # (N, K)
    ok = np.isfinite(excess) & (excess > 0)
    weights = np.where(ok, excess, 0.0) ** 2
    logs = np.log(np.where(ok, excess, 1.0))
    # normal equations, summed lag by lag: the same summation order for any batch size
    outer = (design[:, None, :] * design[None, :, :]).reshape(9, -1)  # (9, K)
    normal = np.zeros((len(g2), 9))
    rhs = np.zeros((len(g2), 3))
    for k in range(design.shape[1]):
        normal += weights[:, k, None] * outer[:, k]
        rhs += (weights[:, k] * logs[:, k])[:, None] * design[:, k]
    normal = normal.reshape(-1, 3, 3)
    solvable = (ok.sum(axis=1) >= 3) & (np.abs(np.linalg.det(normal)) > 1e-300)
    normal[~solvable] = np.eye(3)
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.exp(coef[:, 0])
        sx = np.where(coef[:, 1] > 0, 1.0 / np.sqrt(np.abs(coef[:, 1])), np.nan)
        sy = np.where(coef[:, 2] > 0, 1.0 / np.sqrt(np.abs(coef[:, 2])), np.nan)
    bad = ~solvable | ~np.isfinite(sx) | ~np.isfinite(sy)
    return (np.where(bad, np.nan, beta), np.where(bad, np.nan, sx), np.where(bad, np.nan, sy))


class Autocorrelation(DetObjectFunc):
    """Spatial autocorrelation of a region, with speckle contrast and size per frame.

    As a child of an ROI it correlates the ROI's pixels (leave ``module`` and ``roi``
    unset); standalone it takes ``module`` and ``roi``.

    Parameters
    ----------
    name : str
        Output prefix.
    module : int or None
        Detector module (standalone use).
    roi : list of int or None
        ``[y0, y1, x0, x1]`` on ``module`` (pixels, end exclusive; standalone use).
    crop_size : int
        Half width ``c`` (pixels) of the written ``acorr`` (2c + 1 lags per axis).
    fit_radius : int
        Lags within this distance (pixels, zero lag excluded) enter the contrast fit.
    """

    def __init__(self, name: str = "autocorrelation", module: Optional[int] = None, roi: Optional[List[int]] = None,
                 crop_size: int = 10, fit_radius: int = 3):
        super().__init__(name)
        if (module is None) != (roi is None):
            raise ConfigError("roi" if roi is None else "module",
                              "give both module and roi (standalone) or neither (as a child of an ROI)")
        self.roi = None if roi is None else check_module_roi(module, roi)
        self.module = None if module is None else int(module)
        self.crop_size = check_count("crop_size", crop_size)
        self.fit_radius = check_count("fit_radius", fit_radius)
        if self.roi is not None:
            y0, y1, x0, x1 = self.roi
            self._check_region(y1 - y0, x1 - x0)

    def _check_region(self, h: int, w: int) -> None:
        lag = max(self.crop_size, self.fit_radius)
        if min(h, w) <= 2 * lag:
            raise ConfigError("crop_size", f"the {h} x {w} region is too small for lags up to {lag} pixels; "
                                           f"need a region larger than {2 * lag} pixels on each side "
                                           "or a smaller crop_size/fit_radius")

    def check_detector_type(self, detector_type) -> None:
        """The module and region must lie on the detector (called when the config is read)."""
        if self.roi is not None:
            check_roi_on_type(detector_type, self.module, self.roi)

    def setFromDet(self, det) -> None:
        super().setFromDet(det)
        if self.roi is not None:
            check_roi_on(det, self.module, self.roi)
        if self.module is not None and self.module not in tuple(det.modules):
            raise ConfigError("module", f"module {self.module} is not among the detector's modules "
                                        f"{tuple(det.modules)}")

    def required_modules(self):
        return (self.module,) if self.module is not None else None

    def required_region(self):
        return None if self.roi is None else tuple(self.roi)

    def _region(self, frames: Frames):
        if self.module is not None:
            if frames.modules is None:
                raise ConfigError("module", f"{self.name} receives a crop from its parent; "
                                            "leave module and roi unset as a child of an ROI")
            return crop_module(frames, self.module, self.roi)
        if frames.modules is not None or frames.data.ndim != 3:
            raise ConfigError("roi", f"{self.name} gets frames of shape {frames.data.shape[1:]}; "
                                     "standalone it needs module and roi [y0, y1, x0, x1]")
        self._check_region(*frames.data.shape[1:])
        return frames.data, frames.valid

    def process(self, frames: Frames) -> Dict[str, np.ndarray]:
        data, valid = self._region(frames)
        lag = max(self.crop_size, self.fit_radius)
        g2 = autocorrelation(data, valid, lag)
        beta, sx, sy = fit_speckle(g2, self.fit_radius)
        c = self.crop_size
        crop = g2[:, lag - c:lag + c + 1, lag - c:lag + c + 1].astype(np.float32)
        return {"acorr": crop, "horizontal": crop[:, c, :].copy(), "vertical": crop[:, :, c].copy(),
                "contrast": beta, "speckle_size": np.sqrt(sx * sy),
                "speckle_size_x": sx, "speckle_size_y": sy}

    def config_arrays(self) -> Dict[str, np.ndarray]:
        return {"lags": np.arange(-self.crop_size, self.crop_size + 1)}

    def output_units(self) -> Dict[str, str]:
        return {"acorr": "", "horizontal": "", "vertical": "", "contrast": "",
                "speckle_size": "pixel", "speckle_size_x": "pixel", "speckle_size_y": "pixel"}
