"""Detector images of the session: AvImage from the raw data, assembly with the geometry, plotAvImage.

An image is a :class:`DetImage`: the module images (M, rows, columns) together with the modules they
are and the geometry they are drawn with, so every feature that takes an image places and
converts its pixels the same way, whatever was computed before.
"""
from __future__ import annotations

import logging
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from smalldata.ana.geometry import ImageGeometry
from smalldata.ana.plotting import IMAGE_PERCENTILES, robust_limits
from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)
#: colour of drawn pixels without a value (masked or never good); gaps stay the background's white
MASKED_RGBA = (0.55, 0.55, 0.55, 1.0)


class DetImage:
    """Module images with the modules they are and the geometry that places them.

    Behaves as a numpy array of the module images (``np.asarray(img)``, ``img.shape``,
    ``img[0]``) and knows how to draw itself (:meth:`assembled`).

    Parameters
    ----------
    data : ndarray, (M, rows, columns)
        Pixel values (NaN: no good value); a module has the geometry's module shape.
    modules : sequence of int
        Detector module of each of the M images.
    geometry : ImageGeometry
        Geometry used to assemble and convert coordinates.
    det : str
        Detector name.
    units : str
        Unit of the values (``photon``, ``ADU``, ...).
    n_frames : int
        Frames averaged.
    statistic : str
        ``mean``, ``max`` or what made the image.
    """

    def __init__(self, data: np.ndarray, modules: Sequence[int], geometry: ImageGeometry, det: str = "dssc",
                 units: str = "", n_frames: int = 0, statistic: str = "mean"):
        data = np.asarray(data, dtype=np.float32)
        modules = tuple(int(m) for m in modules)
        if data.ndim != 3 or data.shape[1:] != geometry.module_shape or data.shape[0] != len(modules):
            raise SmallDataError(f"image of shape {data.shape} does not match modules {list(modules)}")
        self.data = data
        self.modules = modules
        self.geometry = geometry
        self.det = det
        self.units = units
        self.n_frames = int(n_frames)
        self.statistic = statistic

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __getitem__(self, item):
        return self.data[item]

    def __len__(self) -> int:
        return len(self.data)

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of the module images, (M, rows, columns)."""
        return self.data.shape

    def module(self, module: int) -> np.ndarray:
        """The (rows, columns) image of detector module ``module``."""
        if module not in self.modules:
            raise SmallDataError(f"module {module} is not in this image (modules {list(self.modules)}); "
                                 f"make one with AvImage(modules=[..., {module}])")
        return self.data[self.modules.index(module)]

    def assembled(self) -> np.ndarray:
        """The 2-D image with every module at its place in the geometry."""
        return self.geometry.assemble(self.data, self.modules)

    def with_geometry(self, geometry: ImageGeometry) -> "DetImage":
        """The same pixel values drawn with another geometry (e.g. new quadrant positions)."""
        return DetImage(self.data, self.modules, geometry, self.det, self.units, self.n_frames, self.statistic)

    def __repr__(self) -> str:
        return (f"DetImage({self.det}, modules {list(self.modules)}, {self.statistic} of {self.n_frames} frames, "
                f"units {self.units or '-'})")


def as_detimage(image, geometry: ImageGeometry, det: str = "dssc",
                modules: Optional[Sequence[int]] = None) -> DetImage:
    """``image`` as a :class:`DetImage`: itself, or an array with its ``modules`` (an image of every module
    of the geometry needs none)."""
    if isinstance(image, DetImage):
        return image
    data = np.asarray(image)
    if modules is None:
        if data.ndim == 3 and data.shape[0] == geometry.n_modules:
            modules = range(geometry.n_modules)
        else:
            raise SmallDataError(f"an array of {data.shape[0] if data.ndim == 3 else '?'} module images does not say "
                                 "which modules they are; pass modules=[...] or use the DetImage of AvImage")
    return DetImage(data, modules, geometry, det)


class ImagesMixin:
    """AvImage, assemble and plotAvImage of :class:`~smalldata.ana.session.SmallDataAna`."""

    def geometry(self, det: str = "dssc") -> ImageGeometry:
        """The geometry of ``det``: the ``-c`` config's when given, the file's otherwise.

        :meth:`set_geometry` replaces it (e.g. to iterate the quadrant positions).
        """
        if det not in self._geometries:
            geometry_file, quads = self._geometry_settings(det)
            self._geometries[det] = ImageGeometry(geometry_file, quads)
        return self._geometries[det]

    def set_geometry(self, det: str = "dssc", quadrant_positions: Optional[Sequence[Sequence[float]]] = None,
                     geometry_file: Optional[str] = None) -> ImageGeometry:
        """Use other quadrant positions (metres) or geometry file for ``det`` from now on.

        Images made afterwards carry it; ``img.with_geometry(ana.geometry(det))`` redraws an
        older one; :meth:`write_config` writes it into the config.
        """
        current = self.geometry(det)
        quads = current.quadrant_positions if quadrant_positions is None else quadrant_positions
        self._geometries[det] = ImageGeometry(geometry_file or current.geometry_file, quads)
        self._tuned.setdefault("geometry", {})[det] = self._geometries[det]
        return self._geometries[det]

    def calibrated_frames(self, det: str = "dssc", selection: Optional[np.ndarray] = None, max_trains: int = 50,
                          modules: Optional[Sequence[int]] = None, trains_per_read: int = 8) -> Iterator:
        """Calibrated frames of the selected events, read from the raw data, as the producer makes them.

        Yields ``(frames, pick)`` per block of trains: :class:`~smalldata.plugin.frames.Frames` of
        whole trains (dark constants, gain, masks, the pattern's intra-dark subtraction) and the
        bool array of the frames that are selected events. At most ``max_trains`` trains with
        selected events are read.
        """
        from smalldata.config.producer import ProducerConfig
        from smalldata.detectors.registry import detector_type
        from smalldata.io.runaccess import RunAccess
        from smalldata.pipeline.detectors import DetectorSetup, build_detobject, needs_noise
        from smalldata.pulses.patterns import FramePattern
        from smalldata.sums.average import selected_trains

        config = ProducerConfig.from_file(self.config_path)
        if det not in config.detectors:
            raise SmallDataError(f"no detector {det!r} in {self.config_path}; detectors: {list(config.detectors)}")
        access = RunAccess.open(self.proposal, self.run, config.settings["data_root"],
                                detector_type=detector_type(config.detectors[det], f"detectors.{det}"))
        modules = tuple(sorted(modules)) if modules is not None else access.available_modules()
        detobj = build_detobject(config, det, self.proposal, modules, access,
                                 noise=needs_noise(config.detectors[det]))
        pattern_cfg = config.settings["pattern"] or {}
        dark_subtraction = None
        if pattern_cfg.get("subtract_dark", "none") != "none":
            dark_subtraction = {"pattern": FramePattern(pattern_cfg["labels"]), "mode": pattern_cfg["subtract_dark"],
                                "match_by": pattern_cfg["match_by"]}
        setup = DetectorSetup(det, detobj, [], modules, dark_subtraction=dark_subtraction)
        tids, pids, sel, trains = selected_trains(self, selection, max_trains)
        wanted = set(zip(tids[sel].tolist(), pids[sel].tolist()))
        for start in range(0, len(trains), trains_per_read):
            raw = access.read_raw(modules, trains[start:start + trains_per_read])
            frames = setup.calibrate(raw, raw.frame_index)
            pick = np.array([(t, p) in wanted for t, p in zip(raw.train_ids.tolist(), raw.pulse_ids.tolist())],
                            dtype=bool)
            access.release(raw)  # calibrated: the raw frames' memory serves the next read
            yield frames, pick

    def AvImage(self, det: str = "dssc", selection: Optional[np.ndarray] = None, max_trains: int = 50,
                statistic: str = "mean", modules: Optional[Sequence[int]] = None) -> DetImage:
        """Average (or max) calibrated image of the selected events, from the raw data.

        Reads the raw frames of at most ``max_trains`` trains that hold selected events, for
        ``modules`` (default: every module of the run), calibrated as the producer does (intra-
        train darks subtracted when the config's ``pattern.subtract_dark`` says so). Returns a
        :class:`DetImage` (M, rows, columns) in the detector's units, NaN where a pixel was never good;
        it carries its modules and the session's current geometry of ``det``.
        """
        if statistic not in ("mean", "max"):
            raise SmallDataError(f"statistic must be 'mean' or 'max', got {statistic!r}")
        from smalldata.sums.average import session_average  # the fused kernel, batches of frames

        fast = session_average(self, det, selection, max_trains, statistic, modules)
        if fast is not None:
            image, used, units, n_frames = fast
            return DetImage(image, used, self.geometry(det), det, units, n_frames, statistic)
        total = count = None
        n_frames, units, used = 0, "", ()
        for frames, pick in self.calibrated_frames(det, selection, max_trains, modules):
            data = np.where(frames.valid[pick], frames.data[pick], np.nan)
            n_frames += int(pick.sum())
            units, used = frames.units, frames.modules
            if statistic == "max":
                block = np.fmax.reduce(data, axis=0) if len(data) else None
                if block is not None:
                    total = block if total is None else np.fmax(total, block)
            else:
                s = np.nansum(data, axis=0, dtype=np.float64)
                c = np.isfinite(data).sum(axis=0)
                total = s if total is None else total + s
                count = c if count is None else count + c
        if statistic == "max":
            image = total
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                image = total / count
        return DetImage(image, used, self.geometry(det), det, units, n_frames, statistic)

    def assemble(self, image, det: str = "dssc", modules: Optional[Sequence[int]] = None) -> np.ndarray:
        """The 2-D image of module images placed with their geometry.

        ``image`` is a :class:`DetImage` (drawn with its own modules and geometry), or an array
        of every module's image, or of M images with ``modules=[...]`` (drawn with the geometry of ``det``).
        """
        return as_detimage(image, self.geometry(det), det, modules).assembled()

    def plotAvImage(self, image, det: str = "dssc", ax=None, vmin: Optional[float] = None,
                    vmax: Optional[float] = None, modules: Optional[Sequence[int]] = None,
                    geometry: Optional[ImageGeometry] = None, title: Optional[str] = None,
                    percentiles: Sequence[float] = IMAGE_PERCENTILES, full_range: bool = False):
        """Show an image assembled with its geometry, each pixel with its real shape.

        Axes are assembled-image pixels (bottom and left) and millimetres in the detector plane
        (top and right); a DSSC pixel is drawn 236 um wide and 204 um high, so rings are round.
        Modules are numbered; pixels without a value (masked, never good) are grey, gaps between
        modules white.

        Parameters
        ----------
        image : DetImage or ndarray
            Usually the result of :meth:`AvImage` (its modules and geometry are used).
        vmin, vmax : float, optional
            Colour limits (default: the ``percentiles`` of the drawn values).
        percentiles : (float, float)
            Percentiles of the drawn values that set the colour limits (default 1 and 99: a
            bright patch of less than 1 % of the pixels does not set the scale).
        full_range : bool
            Colour limits from the smallest to the largest value instead.
        geometry : ImageGeometry, optional
            Draw with this geometry instead of the image's (e.g. ``ana.set_geometry(...)``'s).
        """
        img = as_detimage(image, self.geometry(det), det, modules)
        if geometry is not None:
            img = img.with_geometry(geometry)
        ax = self._image_axes(img, ax, vmin, vmax, title, percentiles, full_range)
        self.plots.finish(ax.figure, "AvImage")
        return ax

    def _image_axes(self, img: DetImage, ax=None, vmin: Optional[float] = None, vmax: Optional[float] = None,
                    title: Optional[str] = None, percentiles: Sequence[float] = IMAGE_PERCENTILES,
                    full_range: bool = False):
        """Draw ``img`` assembled on new (or given) axes, without finishing the figure."""
        from matplotlib.patches import Patch

        geometry = img.geometry
        assembled = img.assembled()
        fig, ax = self.plots.subplots(figsize=(6.5, 6), ax=ax)
        lo, hi = robust_limits(assembled, vmin, vmax, percentiles, full_range)
        # one assembled pixel is pixel_shape (x, y) metres: rows drawn that much shorter than columns
        aspect = float(geometry.pixel_shape[1] / geometry.pixel_shape[0])
        shown = ax.imshow(assembled, origin="lower", vmin=lo, vmax=hi, interpolation="nearest", aspect=aspect)
        fig.colorbar(shown, ax=ax, label=img.units or None, shrink=0.8, pad=0.14)
        on_module = np.isin(np.where(geometry.index_map >= 0, geometry.index_map // geometry.module_pixels, -1),
                            img.modules)
        no_value = on_module & ~np.isfinite(assembled)
        overlay = np.zeros(assembled.shape + (4,), dtype=np.float32)
        overlay[no_value] = MASKED_RGBA
        ax.imshow(overlay, origin="lower", interpolation="nearest", aspect=aspect)
        fig.legend(handles=[Patch(color=MASKED_RGBA, label="no value (masked)"),
                            Patch(facecolor="white", edgecolor="0.5", label="gap")],
                   loc="lower left", ncol=2, fontsize=7, frameon=False)
        for module in img.modules:
            row, col = geometry.module_to_pixel(module, (geometry.module_shape[0] - 1) / 2,
                                                (geometry.module_shape[1] - 1) / 2)
            ax.text(float(col), float(row), str(module), ha="center", va="center", fontsize=9, color="k",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.6, "lw": 0})
        rows, cols = np.nonzero(on_module)
        if rows.size:  # zoom to the modules the image holds
            margin = 10
            ax.set_xlim(cols.min() - margin, cols.max() + margin)
            ax.set_ylim(rows.min() - margin, rows.max() + margin)
        ax.set_xlabel("column (assembled pixels)")
        ax.set_ylabel("row (assembled pixels)")
        self._millimetre_axes(ax, geometry)
        ax.set_title(title or f"run {self.run} {img.det} modules {_module_text(img.modules)}")
        return ax

    @staticmethod
    def _millimetre_axes(ax, geometry: ImageGeometry) -> None:
        """Secondary axes in millimetres of the detector plane (extra-geom's frame)."""
        size = geometry.pixel_shape * 1e3
        centre = geometry.centre
        top = ax.secondary_xaxis("top", functions=(lambda c: (c - centre[1] + 0.5) * size[0],
                                                   lambda x: x / size[0] + centre[1] - 0.5))
        right = ax.secondary_yaxis("right", functions=(lambda r: (r - centre[0] + 0.5) * size[1],
                                                       lambda y: y / size[1] + centre[0] - 0.5))
        top.set_xlabel("x (mm)", fontsize=8)
        right.set_ylabel("y (mm)", fontsize=8)


def _module_text(modules: Sequence[int]) -> str:
    modules = list(modules)
    if modules == list(range(modules[0], modules[-1] + 1)) and len(modules) > 2:
        return f"{modules[0]}-{modules[-1]}"
    return ",".join(str(m) for m in modules)
