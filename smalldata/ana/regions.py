"""Regions and masks drawn on an image: SelectRegion, MakeMask, roi_stats.

Both work with the mouse in a GUI backend (click two corners / the corners of a polygon on
the assembled image) and with arguments everywhere (module ROI, assembled-image box, polygon,
value thresholds), so the same selections can be scripted and tested. What they select is kept
for :meth:`~smalldata.ana.configwrite.ConfigWriteMixin.write_config`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from smalldata.ana.images import DetImage, as_detimage
from smalldata.ana.plotting import click_points
from smalldata.errors import ConfigError, SmallDataError


@dataclass
class Region:
    """A rectangular ROI on one module, in the producer's ``roi`` function terms.

    Attributes
    ----------
    name : str
        Function name in the config (the output prefix).
    det : str
        Detector.
    module : int
        Detector module.
    roi : list of int
        ``[y0, y1, x0, x1]``, module rows and columns, end exclusive.
    stats : dict
        :meth:`RegionsMixin.roi_stats` of the image it was drawn on.
    """

    name: str
    det: str
    module: int
    roi: List[int]
    stats: Dict[str, float] = field(default_factory=dict)

    def select(self, data: np.ndarray, modules: Sequence[int]) -> np.ndarray:
        """The ROI's pixels of module images ``data`` (..., M, rows, columns)."""
        y0, y1, x0, x1 = self.roi
        return np.asarray(data)[..., list(modules).index(self.module), y0:y1, x0:x1]


@dataclass
class PixelMask:
    """A pixel mask made on an image (True = good).

    Attributes
    ----------
    det : str
        Detector.
    modules : tuple of int
        Modules of ``mask``.
    mask : ndarray, (M, rows, columns) bool
    n_modules : int
        Modules of the whole detector (its geometry's).
    """

    det: str
    modules: tuple
    mask: np.ndarray
    n_modules: int

    def full(self) -> np.ndarray:
        """(n_modules, rows, columns) bool; modules not in the image are all good."""
        out = np.ones((self.n_modules,) + self.mask.shape[1:], dtype=bool)
        out[list(self.modules)] = self.mask
        return out

    @property
    def n_masked(self) -> int:
        """Pixels marked bad."""
        return int((~self.mask).sum())


class RegionsMixin:
    """SelectRegion, MakeMask and roi_stats of ``SmallDataAna``."""

    def SelectRegion(self, image, module: Optional[int] = None, roi: Optional[Sequence[int]] = None,
                     box: Optional[Sequence[float]] = None, name: str = "roi", det: Optional[str] = None) -> Region:
        """Choose a rectangular ROI on one module of an image.

        Give ``module`` and ``roi = [y0, y1, x0, x1]`` (module pixels), or ``box = [row0, row1,
        col0, col1]`` in assembled-image pixels (as read off :meth:`plotAvImage`), or nothing:
        then click two opposite corners on the image (GUI backend). The region is drawn, its
        :meth:`roi_stats` computed, and it is kept as ROI function ``name`` for :meth:`write_config`.
        """
        img = as_detimage(image, self.geometry(det or "dssc"), det or "dssc")
        det = det or img.det
        if module is None and roi is None:
            if box is None:
                fig = self._image_axes(img, title=f"SelectRegion {name}: click two corners").figure
                corners = click_points(fig, 2, "SelectRegion", "module=..., roi=[y0, y1, x0, x1] or box=[...]")
                box = [corners[:, 0].min(), corners[:, 0].max(), corners[:, 1].min(), corners[:, 1].max()]
            module, roi = self._box_to_roi(img, box)
        elif module is None or roi is None:
            raise SmallDataError("SelectRegion: give both module and roi=[y0, y1, x0, x1], or box=[...]")
        from smalldata.funcs.roi import check_module_roi

        try:
            roi = check_module_roi(int(module), [int(v) for v in roi])
        except ConfigError as exc:
            raise SmallDataError(f"SelectRegion: {exc.message}") from None
        region = Region(name, det, int(module), roi, self.roi_stats(img, module, roi))
        self._tuned.setdefault("regions", {})[name] = region
        self._draw_region(img, region)
        return region

    def _box_to_roi(self, img: DetImage, box: Sequence[float]):
        row0, row1, col0, col1 = (int(round(v)) for v in box)
        rows, cols = np.mgrid[min(row0, row1):max(row0, row1) + 1, min(col0, col1):max(col0, col1) + 1]
        module, r, c = img.geometry.pixel_to_module(rows, cols)
        on = module >= 0
        found = sorted(set(module[on].tolist()))
        if not found:
            raise SmallDataError(f"box {list(box)} covers no detector pixel")
        if len(found) > 1:
            raise SmallDataError(f"box {list(box)} spans modules {found}; an ROI lies on one module")
        if found[0] not in img.modules:
            raise SmallDataError(f"box {list(box)} is on module {found[0]}, which the image does not hold "
                                 f"(modules {list(img.modules)})")
        r, c = r[on], c[on]
        return found[0], [int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1]

    def _draw_region(self, img: DetImage, region: Region) -> None:
        ax = self._image_axes(img, title=f"SelectRegion {region.name}: module {region.module} {region.roi}")
        y0, y1, x0, x1 = region.roi
        corner_r = np.array([y0, y0, y1, y1, y0]) - 0.5
        corner_c = np.array([x0, x1, x1, x0, x0]) - 0.5
        rows, cols = img.geometry.module_to_pixel(region.module, corner_r, corner_c)
        ax.plot(cols, rows, color="r", lw=1.2)
        self.plots.finish(ax.figure, f"SelectRegion_{region.name}")

    def roi_stats(self, image, module: int, roi: Sequence[int], modules: Optional[Sequence[int]] = None) -> Dict:
        """Sum, mean, max, centre of mass and good pixels of ``roi = [y0, y1, x0, x1]`` of ``module``.

        ``image`` is a :class:`DetImage` (its own modules) or an array with ``modules=[...]``
        (an image of every module of the session's geometry needs none). A module the image does not
        hold is an error.
        """
        if isinstance(image, DetImage):
            crop_module = image.module(module)
        else:
            data = np.asarray(image)
            n_modules = self.geometry().n_modules if modules is None else len(modules)
            if modules is None and data.shape[0] != n_modules:
                raise SmallDataError(f"an array of {data.shape[0]} module images does not say which modules they "
                                     "are; pass modules=[...] or use the DetImage of AvImage")
            modules = list(range(n_modules)) if modules is None else list(modules)
            if module not in modules:
                raise SmallDataError(f"module {module} is not in this image (modules {modules})")
            crop_module = data[modules.index(module)]
        y0, y1, x0, x1 = roi
        crop = crop_module[y0:y1, x0:x1]
        good = np.isfinite(crop)
        values = np.where(good, crop, 0.0).astype(np.float64)
        total = values.sum()
        rows, cols = np.mgrid[y0:y1, x0:x1]
        return {"sum": float(total), "mean": float(total / max(good.sum(), 1)),
                "max": float(values.max()) if good.any() else float("nan"), "npix": int(good.sum()),
                "com_y": float((values * rows).sum() / total) if total > 0 else float("nan"),
                "com_x": float((values * cols).sum() / total) if total > 0 else float("nan")}

    def MakeMask(self, image, threshold_low: Optional[float] = None, threshold_high: Optional[float] = None,
                 polygons: Optional[Sequence[Sequence[Sequence[float]]]] = None,
                 rois: Optional[Sequence] = None, mask_nan: bool = True, det: Optional[str] = None,
                 combine: bool = True) -> PixelMask:
        """Mark pixels bad on an image; the result becomes the config's ``user_mask``.

        Parameters
        ----------
        image : DetImage
            E.g. an :meth:`AvImage`; masks are made for its modules.
        threshold_low, threshold_high : float, optional
            Pixels below / above these values (image units) are bad (e.g. hot pixels); the good
            range ``threshold_low <= value <= threshold_high`` must not be empty.
        polygons : list of [(row, col), ...], optional
            Pixels drawn inside these polygons (assembled-image pixels) are bad.
            With no criterion at all: click the polygon's corners, Enter to finish (GUI backend).
        rois : list of (module, [y0, y1, x0, x1]), optional
            Module-pixel rectangles that are bad.
        mask_nan : bool
            Mark pixels without a value in the image (NaN: never good in the frames) bad; no
            threshold can keep them. False keeps them as they are.
        combine : bool
            Combine (AND) with the mask made before for this detector in this session.
        """
        img = as_detimage(image, self.geometry(det or "dssc"), det or "dssc")
        det = det or img.det
        data = img.data
        if threshold_low is not None and threshold_high is not None and threshold_low > threshold_high:
            raise SmallDataError(f"MakeMask: threshold_low={threshold_low} is above threshold_high={threshold_high}, "
                                 "so every pixel would be bad; pixels below threshold_low and above threshold_high "
                                 "are masked: swap the two values")
        good = np.ones(data.shape, dtype=bool)
        nothing = threshold_low is None and threshold_high is None and not polygons and not rois
        if nothing:
            fig = self._image_axes(img, title="MakeMask: click polygon corners, Enter to finish").figure
            polygons = [click_points(fig, -1, "MakeMask", "threshold_low/high=..., polygons=[...] or rois=[...]")]
        with np.errstate(invalid="ignore"):
            if threshold_low is not None:
                good &= ~(data < threshold_low)
            if threshold_high is not None:
                good &= ~(data > threshold_high)
        if mask_nan:
            good &= np.isfinite(data)
        for poly in polygons or ():
            good &= ~self._inside_polygon(img, poly)
        for module, (y0, y1, x0, x1) in rois or ():
            if module not in img.modules:
                raise SmallDataError(f"MakeMask: module {module} is not in the image (modules {list(img.modules)})")
            good[img.modules.index(module), y0:y1, x0:x1] = False
        masks = self._tuned.setdefault("masks", {})
        whole = (img.geometry.n_modules,) + img.geometry.module_shape
        full = masks[det].copy() if combine and det in masks else np.ones(whole, bool)
        full[list(img.modules)] &= good
        masks[det] = full
        result = PixelMask(det, img.modules, full[list(img.modules)], img.geometry.n_modules)
        shown = DetImage(np.where(result.mask, data, np.nan), img.modules, img.geometry, det, img.units)
        ax = self._image_axes(shown, title=f"MakeMask: {result.n_masked} pixels masked")
        self.plots.finish(ax.figure, "MakeMask")
        return result

    @staticmethod
    def _inside_polygon(img: DetImage, polygon) -> np.ndarray:
        """(M, rows, columns) bool: module pixels drawn inside ``polygon`` (assembled (row, col) corners)."""
        from matplotlib.path import Path as PolygonPath

        poly = np.asarray(polygon, dtype=float)
        if poly.ndim != 2 or poly.shape[0] < 3 or poly.shape[1] != 2:
            raise SmallDataError("a polygon needs at least 3 (row, col) corners")
        rows, cols = np.nonzero(img.geometry.index_map >= 0)
        inside = PolygonPath(poly[:, ::-1]).contains_points(np.column_stack([cols, rows]))
        assembled = np.zeros(img.geometry.shape, dtype=bool)
        assembled[rows[inside], cols[inside]] = True
        return img.geometry.module_array(assembled, img.modules)
