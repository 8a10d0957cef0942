"""The flat field between the zone-plate orders: planes fitted to the ratio images.

The zone plate illuminates the three beams differently. With empty membranes the
ratio images ``n/0`` and ``p/0`` (dark-corrected mean images of the ROIs, pixel by
pixel) are fitted by planes ``c0 + cx * x + cy * y`` over the pixel position
(x: column, y: row, in pixels from the ROI centre), within a domain where the product
``n * 0`` (``p * 0``) and the ratio lie between thresholds. With ``symmetric`` the two
planes are mirror images of each other (``p``: ``c0, -cx, cy``), fitted together.
Correcting divides the ``n`` (``p``) pixels by their plane.

The plane uses pixel indices, not the hexagonal pixels' physical positions: the
correction is evaluated on the same indices, so the lattice does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from smalldata.boz.rois import crop, roi_shape
from smalldata.errors import DataError

#: Fewest domain pixels for a plane fit.
MIN_DOMAIN_PIXELS = 20


@dataclass
class FlatField:
    """Fitted flat-field planes.

    Attributes
    ----------
    n, p : (3,) float
        ``(c0, cx, cy)`` of the planes of ``n/0`` and ``p/0``.
    n_err, p_err : (3,) float
        Standard errors of the parameters.
    symmetric : bool
    prod_th, ratio_th : (low, high)
        Domain thresholds used (product as a fraction of its 99.9th percentile; ratio absolute).
    domain_pixels : dict
        Domain size per order.
    """

    n: np.ndarray
    p: np.ndarray
    n_err: np.ndarray
    p_err: np.ndarray
    symmetric: bool = False
    prod_th: Tuple[float, float] = (0.05, np.inf)
    ratio_th: Tuple[float, float] = (0.2, 5.0)
    domain_pixels: Dict[str, int] = field(default_factory=dict)

    def planes(self, shape: Tuple[int, int]) -> Dict[str, np.ndarray]:
        """``{"n": plane, "p": plane}`` evaluated on a ROI of ``shape``."""
        return {"n": evaluate_plane(self.n, shape), "p": evaluate_plane(self.p, shape)}

    def to_dict(self) -> dict:
        """JSON-ready description."""
        return {"n": [float(v) for v in self.n], "p": [float(v) for v in self.p],
                "n_err": [float(v) for v in self.n_err], "p_err": [float(v) for v in self.p_err],
                "symmetric": bool(self.symmetric), "prod_th": [float(v) for v in self.prod_th],
                "ratio_th": [float(v) for v in self.ratio_th], "domain_pixels": dict(self.domain_pixels)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "FlatField":
        """Inverse of :meth:`to_dict`."""
        return cls(np.array(d["n"], float), np.array(d["p"], float), np.array(d["n_err"], float),
                   np.array(d["p_err"], float), bool(d["symmetric"]), tuple(float(v) for v in d["prod_th"]),
                   tuple(float(v) for v in d["ratio_th"]),
                   dict(d.get("domain_pixels", {})))


def pixel_coordinates(shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel of a ROI of ``shape``, in pixels from its centre, each (h, w)."""
    y = np.arange(shape[0]) - (shape[0] - 1) / 2.0
    x = np.arange(shape[1]) - (shape[1] - 1) / 2.0
    return np.broadcast_to(x[None, :], shape), np.broadcast_to(y[:, None], shape)


def evaluate_plane(params: Sequence[float], shape: Tuple[int, int]) -> np.ndarray:
    """``c0 + cx * x + cy * y`` on a ROI of ``shape``."""
    x, y = pixel_coordinates(shape)
    c0, cx, cy = params
    return c0 + cx * x + cy * y


def ratio_images(mean_image: np.ndarray, rois: Mapping[str, Sequence[int]], mask: Optional[np.ndarray] = None):
    """``{"n": n/0, "p": p/0}`` ratio images and ``{"n": n*0, "p": p*0}`` product images of the ROIs.

    Pixels where either order is masked (``mask`` False) or ``0`` is not positive are NaN.
    """
    img = np.asarray(mean_image, dtype=np.float64)
    good = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool)
    zero, zgood = crop(img, rois, "0"), crop(good, rois, "0")
    ratios, products = {}, {}
    for order in ("n", "p"):
        sig, sgood = crop(img, rois, order), crop(good, rois, order)
        ok = zgood & sgood & (zero > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[order] = np.where(ok, sig / zero, np.nan)
        products[order] = np.where(ok, sig * zero, np.nan)
    return ratios, products


def fit_domain(ratios, products, prod_th=(0.05, np.inf), ratio_th=(0.2, 5.0)) -> Dict[str, np.ndarray]:
    """Pixels used in the fit: product (fraction of its 99.9th percentile) and ratio within thresholds."""
    out = {}
    for order in ("n", "p"):
        prod, ratio = products[order], ratios[order]
        finite = np.isfinite(prod) & np.isfinite(ratio)
        scale = np.percentile(prod[finite], 99.9) if finite.any() else 1.0
        rel = np.where(finite, prod / scale, np.nan)
        with np.errstate(invalid="ignore"):
            out[order] = finite & (rel >= prod_th[0]) & (rel <= prod_th[1]) & \
                (ratio >= ratio_th[0]) & (ratio <= ratio_th[1])
    return out


def fit_flat_field(mean_image: np.ndarray, rois: Mapping[str, Sequence[int]], mask: Optional[np.ndarray] = None,
                   symmetric: bool = False, prod_th=(0.05, np.inf), ratio_th=(0.2, 5.0)) -> FlatField:
    """Fit the planes of ``n/0`` and ``p/0`` by linear least squares over the domain.

    Parameters
    ----------
    mean_image : (128, 512) array
        Dark-corrected (and, when known, non-linearity corrected) mean of unsaturated frames.
    rois : dict
        The three ROIs.
    mask : (128, 512) bool, optional
        Good pixels.
    symmetric : bool
        Mirror-symmetric planes for ``n`` and ``p``.
    prod_th, ratio_th : (low, high)
        Domain thresholds (see :func:`fit_domain`).

    Returns
    -------
    FlatField
    """
    ratios, products = ratio_images(mean_image, rois, mask)
    domain = fit_domain(ratios, products, prod_th, ratio_th)
    shape = roi_shape(rois)
    x, y = pixel_coordinates(shape)
    for order in ("n", "p"):
        if domain[order].sum() < MIN_DOMAIN_PIXELS:
            raise DataError(f"flat field: only {int(domain[order].sum())} pixels of {order}/0 lie within the "
                            f"domain (product {list(prod_th)}, ratio {list(ratio_th)}); widen the thresholds "
                            "or check the ROIs")
    sizes = {o: int(domain[o].sum()) for o in ("n", "p")}
    if symmetric:
        rows, rhs = [], []
        for order, sign in (("n", 1.0), ("p", -1.0)):
            d = domain[order]
            rows.append(np.stack([np.ones(d.sum()), sign * x[d], y[d]], axis=1))
            rhs.append(ratios[order][d])
        params, errors = _lstsq(np.concatenate(rows), np.concatenate(rhs))
        n, p = params, params * np.array([1.0, -1.0, 1.0])
        return FlatField(n, p, errors, errors.copy(), True, tuple(prod_th), tuple(ratio_th), sizes)
    fitted = {}
    for order in ("n", "p"):
        d = domain[order]
        a = np.stack([np.ones(d.sum()), x[d], y[d]], axis=1)
        fitted[order] = _lstsq(a, ratios[order][d])
    return FlatField(fitted["n"][0], fitted["p"][0], fitted["n"][1], fitted["p"][1], False, tuple(prod_th),
                     tuple(ratio_th), sizes)


def _lstsq(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Least-squares parameters and their standard errors (from the residual scatter)."""
    params, _, _, _ = np.linalg.lstsq(a, b, rcond=None)
    resid = b - a @ params
    dof = max(len(b) - a.shape[1], 1)
    cov = np.linalg.inv(a.T @ a) * (resid @ resid) / dof
    return params, np.sqrt(np.diag(cov))
