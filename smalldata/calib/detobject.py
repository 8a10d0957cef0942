"""The detector object: dark constants, gain, masks and geometry, and ``calibrate()``.

:meth:`DetObject.calibrate` turns a :class:`~smalldata.plugin.frames.RawBatch` into
:class:`~smalldata.plugin.frames.Frames`: ``raw - pedestal[cell]`` in float32, then an optional
common-mode correction (median of each 64-pixel ASIC row segment over its good, unlit
pixels), then division by the gain. Valid pixels are good in the static mask, not
saturated and from a module that has the frame.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from smalldata.calib.commonmode import AsicRowMedian, check_common_mode
from smalldata.calib.description import DetObjectDescription
from smalldata.calib.dark import DarkConstants, check_cells_cover, read_dark_file
from smalldata.calib.masks import asic_edge_mask, load_user_mask, status_to_mask
from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
from smalldata.detectors.dssc import DSSC
from smalldata.detectors.types import DetectorType
from smalldata.errors import CalibrationError, ConfigError, DataError
from smalldata.geometry.grid import grid_positions
from smalldata.geometry.positions import default_geometry_file, load_dssc_geometry, pixel_positions
from smalldata.plugin.frames import Frames, RawBatch

log = logging.getLogger(__name__)



class DetObject(DetObjectDescription):
    """A detector with its calibration, masks and pixel positions.

    What kind of detector it is comes from its :class:`~smalldata.detectors.types.DetectorType`
    (module shape, saturation, ASIC tiles, geometry): the DSSC 1M by default; a per-train camera
    is one module with one "memory cell" (:meth:`from_camera_dark`).

    Parameters
    ----------
    name : str
        Detector name (output group), e.g. ``"dssc"``.
    modules : sequence of int
        Module numbers along axis M of the constants, ascending.
    pedestal, noise : ndarray, (M, C, rows, columns)
        Dark pedestal and noise per module, memory cell and pixel (ADU).
    cell_ids : ndarray, (C,)
        Memory cells of the dark constants.
    status_mask : ndarray, (M, 128, 512) uint8
        Bad-pixel reason bits from the dark, 0 = good.
    gain : None, float or ndarray (M, 128, 512)
        ADU per photon; None keeps the data in ADU. Array pixels that are not positive
        and finite are masked.
    geometry_file : path, optional
        extra-geom DSSC geometry file; default extra-geom's ``dssc_geo_june19.h5``.
    quadrant_positions : 4 x 2 floats
        Quadrant positions in metres.
    mask_asic_edges : bool
        Mask the outermost pixel rows and columns of every 64 x 64 ASIC.
    user_mask : None, ndarray or path
        The user's mask, (M, 128, 512) or (16, 128, 512) bool, True = good; or a
        ``.npy`` / ``.h5`` file holding it.
    common_mode : {"none", "asic_row_median"}
        Common-mode correction applied after the pedestal subtraction.
    common_mode_max_adu : float, optional
        Pixels above this (ADU, after pedestal subtraction) are lit and left out of
        the common-mode median; default ``5 x`` each pixel's noise.
    common_mode_min_pixels : int
        Fewest good, unlit pixels in a segment for a correction; otherwise it is left as is.
    dark_file : str, optional
        Where the constants came from (recorded in :meth:`params`).
    dark_run : int, optional
        Run number of the dark (recorded in :meth:`params`).
    detector_type : DetectorType
        What kind of detector (default the DSSC 1M). A type without ASIC tiles has no edge mask
        and no common mode; one other than the DSSC has its pixels on a plain grid.
    settings : mapping, optional
        Detector settings the dark was recorded with (a camera's mode), recorded in :meth:`params`.
    """

    def __init__(self, name: str, modules: Sequence[int], pedestal: np.ndarray, noise: np.ndarray,
                 cell_ids: np.ndarray, status_mask: np.ndarray,
                 gain: Union[None, float, np.ndarray] = None,
                 geometry_file: Optional[os.PathLike] = None,
                 quadrant_positions: Sequence[Sequence[float]] = DSSC_DEFAULT_QUAD_POSITIONS,
                 mask_asic_edges: bool = True,
                 user_mask: Union[None, np.ndarray, os.PathLike, str] = None,
                 common_mode: str = "none",
                 common_mode_max_adu: Optional[float] = None,
                 common_mode_min_pixels: int = 16,
                 dark_file: Optional[str] = None,
                 dark_run: Optional[int] = None,
                 detector_type: DetectorType = DSSC,
                 settings: Optional[Mapping[str, float]] = None):
        self.name = name
        self.type = detector_type
        self.settings = {str(k): float(v) for k, v in (settings or {}).items()}
        module_shape = tuple(detector_type.module_shape)
        if detector_type.asic_shape is None:
            if common_mode != "none":
                raise ConfigError("common_mode", f"a {detector_type.name} has no ASICs: common mode "
                                                 f"{common_mode!r} needs them; use 'none'")
            mask_asic_edges = False
        self.modules = tuple(int(m) for m in modules)
        if list(self.modules) != sorted(set(self.modules)) or not self.modules:
            raise ConfigError("modules", f"modules must be distinct and ascending, got {list(modules)}")
        n_mod = len(self.modules)
        self.cell_ids = np.asarray(cell_ids, dtype=np.uint16)
        shape = (n_mod, len(self.cell_ids)) + module_shape
        if pedestal.shape != shape or (noise is not None and noise.shape != shape):
            raise CalibrationError(f"dark constants have shapes {pedestal.shape} / "
                                   f"{None if noise is None else noise.shape}, expected {shape} "
                                   f"for modules {list(self.modules)} and {len(self.cell_ids)} cells")
        if status_mask.shape != shape[:1] + shape[2:]:
            raise CalibrationError(f"status_mask has shape {status_mask.shape}, expected {shape[:1] + shape[2:]}")
        # cell-major copy: np.take over cells then gives (N, M, 128, 512) directly
        self._ped_cm = np.ascontiguousarray(np.asarray(pedestal, dtype=np.float32).transpose(1, 0, 2, 3))
        self._noise = None if noise is None else np.asarray(noise, dtype=np.float32)
        self.status_mask = np.asarray(status_mask, dtype=np.uint8)
        lut = np.full(int(self.cell_ids.max()) + 1 if len(self.cell_ids) else 1, -1, dtype=np.int64)
        lut[self.cell_ids] = np.arange(len(self.cell_ids))
        self._cell_lut = lut

        self.gain = self._check_gain(gain, (n_mod,) + module_shape)
        self.units = "ADU" if self.gain is None else "photon"
        if detector_type.kind == "dssc":
            self.geometry_file = str(geometry_file) if geometry_file is not None else str(default_geometry_file())
            self.quadrant_positions = [[float(c) for c in q] for q in quadrant_positions]
            self.geometry = load_dssc_geometry(self.geometry_file, self.quadrant_positions)
        else:  # a plain pixel grid (grid_positions)
            self.geometry_file, self.quadrant_positions, self.geometry = None, None, None
        self._positions: Optional[tuple] = None  # x, y, z: computed when first asked for

        self.mask_asic_edges = bool(mask_asic_edges)
        self.user_mask = user_mask
        self.masks: Dict[str, np.ndarray] = {
            "status": status_to_mask(self.status_mask),
            "edges": (asic_edge_mask(n_mod, detector_type=detector_type) if self.mask_asic_edges
                      else np.ones((n_mod,) + module_shape, bool)),
            "user": load_user_mask(user_mask, self.modules, module_shape=module_shape,
                                   n_modules=detector_type.n_modules),
        }
        if isinstance(self.gain, np.ndarray):
            self.masks["gain"] = np.isfinite(self.gain) & (self.gain > 0)
        self.mask = np.logical_and.reduce(list(self.masks.values()))

        segment = detector_type.asic_shape[1] if detector_type.asic_shape else module_shape[1]
        check_common_mode(common_mode, common_mode_max_adu, common_mode_min_pixels, segment)
        self.common_mode = common_mode
        self.common_mode_max_adu = None if common_mode_max_adu is None else float(common_mode_max_adu)
        self.common_mode_min_pixels = int(common_mode_min_pixels)
        self._common_mode = None if common_mode == "none" else AsicRowMedian.for_detector(
            name, self.mask, self._noise, self.common_mode_max_adu, self.common_mode_min_pixels, segment)
        if isinstance(self.gain, np.ndarray):
            self._inv_gain = np.where(self.masks["gain"], 1.0 / np.where(self.masks["gain"], self.gain, 1.0), 0.0)
            self._inv_gain = self._inv_gain.astype(np.float32)
        elif self.gain is not None:
            self._inv_gain = np.float32(1.0 / self.gain)
        else:
            self._inv_gain = None
        self.dark_file = None if dark_file is None else str(dark_file)
        self.dark_run = None if dark_run is None else int(dark_run)

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_gain(gain, shape: tuple):
        if gain is None:
            return None
        if np.ndim(gain) == 0:
            value = float(gain)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError("gain", f"must be > 0 ADU per photon, got {gain}")
            return value
        arr = np.asarray(gain, dtype=np.float32)
        if arr.shape != shape:
            raise ConfigError("gain", f"a gain map must have shape {shape}, got {arr.shape}")
        return arr

    @classmethod
    def from_constants(cls, name: str, dark: DarkConstants, modules: Optional[Sequence[int]] = None,
                       gain: Union[None, float, np.ndarray] = None,
                       geometry_file: Optional[os.PathLike] = None,
                       quadrant_positions: Sequence[Sequence[float]] = DSSC_DEFAULT_QUAD_POSITIONS,
                       mask_asic_edges: bool = True,
                       user_mask: Union[None, np.ndarray, os.PathLike, str] = None,
                       common_mode: str = "none",
                       common_mode_max_adu: Optional[float] = None,
                       common_mode_min_pixels: int = 16,
                       dark_file: Optional[str] = None) -> "DetObject":
        """A detector from :class:`~smalldata.calib.dark.DarkConstants` (optionally a subset of its modules)."""
        if modules is None:
            idx = np.arange(len(dark.modules))
        else:
            idx = np.array([dark.module_index(m) for m in sorted(int(m) for m in modules)])
        whole = np.array_equal(idx, np.arange(len(dark.modules)))
        pick = (lambda a: a) if whole else (lambda a: a[idx])  # noqa: E731 (all modules: no copy)
        return cls(name, [int(m) for m in dark.modules[idx]], pick(dark.pedestal),
                   None if dark.noise is None else pick(dark.noise),
                   dark.cell_ids, dark.status_mask[idx], gain=gain, geometry_file=geometry_file,
                   quadrant_positions=quadrant_positions, mask_asic_edges=mask_asic_edges,
                   user_mask=user_mask, common_mode=common_mode, common_mode_max_adu=common_mode_max_adu,
                   common_mode_min_pixels=common_mode_min_pixels, dark_file=dark_file, dark_run=dark.run)

    @classmethod
    def from_camera_dark(cls, name: str, dark, detector_type: DetectorType,
                         gain: Optional[float] = None,
                         user_mask: Union[None, np.ndarray, os.PathLike, str] = None,
                         dark_file: Optional[str] = None,
                         dark_run: Optional[int] = None) -> "DetObject":
        """A per-train camera from its dark (:class:`~smalldata.cameras.dark.CameraDark`).

        The camera is one module (0) with one memory cell (0): its frames calibrate like the
        DSSC's, with the dark mean as the pedestal.
        """
        return cls(name, [0], dark.mean[None, None], dark.noise[None, None], np.zeros(1, np.uint16),
                   dark.status[None], gain=gain, user_mask=user_mask, detector_type=detector_type,
                   dark_file=dark_file, dark_run=dark_run, settings=dark.settings)

    @classmethod
    def from_dark_file(cls, name: str, path: os.PathLike, modules: Optional[Sequence[int]] = None,
                       gain: Union[None, float, np.ndarray] = None,
                       geometry_file: Optional[os.PathLike] = None,
                       quadrant_positions: Sequence[Sequence[float]] = DSSC_DEFAULT_QUAD_POSITIONS,
                       mask_asic_edges: bool = True,
                       user_mask: Union[None, np.ndarray, os.PathLike, str] = None,
                       common_mode: str = "none",
                       common_mode_max_adu: Optional[float] = None,
                       common_mode_min_pixels: int = 16, noise: bool = True) -> "DetObject":
        """A detector from a dark constants file, loading only ``modules`` (default: all in the file).

        ``noise=False``: without the noise (see :func:`~smalldata.calib.darkfile.read_dark_file`).
        """
        dark = read_dark_file(path, modules, noise=noise)
        return cls.from_constants(name, dark, None, gain=gain, geometry_file=geometry_file,
                                  quadrant_positions=quadrant_positions, mask_asic_edges=mask_asic_edges,
                                  user_mask=user_mask, common_mode=common_mode,
                                  common_mode_max_adu=common_mode_max_adu,
                                  common_mode_min_pixels=common_mode_min_pixels, dark_file=str(path))

    @classmethod
    def from_config(cls, name: str, det_config: Mapping[str, Any], dark_constants: Union[DarkConstants, os.PathLike],
                    modules: Optional[Sequence[int]] = None, dark_file: Optional[str] = None,
                    noise: bool = True) -> "DetObject":
        """A detector from its validated config mapping (``detectors.<name>``) and its dark constants.

        ``modules`` overrides ``det_config["modules"]``; without both, all modules of the dark are used.
        ``dark_file`` names the file constants given in memory were read from. ``noise=False``:
        a file's noise is not read (see :func:`~smalldata.calib.darkfile.read_dark_file`).
        """
        mods = modules if modules is not None else det_config.get("modules")
        if isinstance(dark_constants, DarkConstants):
            dark = dark_constants
        else:
            dark, dark_file = read_dark_file(dark_constants, mods, noise=noise), str(dark_constants)
        quads = det_config.get("quadrant_positions")
        return cls.from_constants(
            name, dark, mods, gain=det_config.get("gain"), geometry_file=det_config.get("geometry_file"),
            quadrant_positions=DSSC_DEFAULT_QUAD_POSITIONS if quads is None else quads,
            mask_asic_edges=det_config.get("mask_asic_edges", True), user_mask=det_config.get("user_mask"),
            common_mode=det_config.get("common_mode", "none"),
            common_mode_max_adu=det_config.get("common_mode_max"), dark_file=dark_file)

    # ------------------------------------------------------------------ properties
    @property
    def pedestal(self) -> np.ndarray:
        """(M, C, 128, 512) float32 pedestal, ADU (a view of the cell-major copy)."""
        return self._ped_cm.transpose(1, 0, 2, 3)

    @property
    def noise(self) -> np.ndarray:
        """(M, C, 128, 512) float32 noise, ADU (:class:`CalibrationError` if it was not loaded)."""
        if self._noise is None:
            raise CalibrationError(f"{self.name}: the dark noise was not loaded; a function that reads it says so "
                                   "with needs_noise() returning True (docs/writing_functions.md), or build the "
                                   "detector with noise=True")
        return self._noise

    has_noise = property(lambda self: self._noise is not None, doc="Whether the dark noise was loaded.")

    @property
    def pedestal_cell_major(self) -> np.ndarray:
        """(C, M, 128, 512) float32 pedestal, ADU: the layout calibration reads (one cell's modules together)."""
        return self._ped_cm

    @property
    def inverse_gain(self):
        """Photons per ADU that calibration multiplies by: None (ADU), a float32, or (M, 128, 512) float32
        (0 where the gain is not usable)."""
        return self._inv_gain

    @property
    def noise_in_units(self) -> np.ndarray:
        """(M, 128, 512) float32 noise (mean over cells) in :attr:`units`."""
        mean = self.noise.mean(axis=1)
        return mean if self._inv_gain is None else (mean * self._inv_gain).astype(np.float32)

    x = property(lambda self: self._pixel_positions()[0], doc="(M, 128, 512) float64 pixel centre x, metres.")
    y = property(lambda self: self._pixel_positions()[1], doc="(M, 128, 512) float64 pixel centre y, metres.")
    z = property(lambda self: self._pixel_positions()[2], doc="(M, 128, 512) float64 pixel centre z, metres.")

    def _pixel_positions(self) -> tuple:
        if self._positions is None:  # extra-geom's, or the plain grid's, when first asked for
            if self.geometry is None:
                self._positions = grid_positions(self.type.module_shape, self.type.pixel_size)
            else:
                self._positions = pixel_positions(self.geometry, self.modules)
        return self._positions

    def set_positions(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        """Use other pixel centre positions (each (M, 128, 512), metres), e.g. another program's."""
        self._positions = tuple(np.asarray(a, dtype=np.float64) for a in (x, y, z))

    def module_index(self, module: int) -> int:
        """Index of module ``module`` along axis M."""
        if module not in self.modules:
            raise KeyError(f"module {module} is not a module of {self.name} (modules {list(self.modules)})")
        return self.modules.index(module)

    # ------------------------------------------------------------------ calibration
    def cell_index(self, cell_ids: np.ndarray, run_label: str = "the data") -> np.ndarray:
        """Index into the dark's cells of each of ``cell_ids``; :class:`CalibrationError` if not covered."""
        cells = np.asarray(cell_ids).astype(np.int64, copy=False)
        lut = self._cell_lut
        if len(cells) and (cells.max() >= len(lut) or (lut[cells] < 0).any()):
            check_cells_cover(self.cell_ids, cells, run_label, self.dark_run)
        return lut[cells]

    def module_data(self, raw: RawBatch) -> tuple:
        """``raw.data`` and ``raw.present`` restricted to :attr:`modules`."""
        if tuple(raw.modules) == self.modules:
            return raw.data, raw.present
        lacking = [m for m in self.modules if m not in raw.modules]
        if lacking:
            raise DataError(f"batch has modules {list(raw.modules)}, detector {self.name} needs {lacking} too")
        pos = [tuple(raw.modules).index(m) for m in self.modules]
        return raw.data[:, pos], raw.present[:, pos]

    def calibrate(self, raw: RawBatch, region: Optional[Sequence[int]] = None) -> Frames:
        """Calibrated frames: float32 ``(raw - pedestal[cell] - common mode) / gain``.

        ``valid`` is the static :attr:`mask` and ``raw < 511`` (not saturated) and the
        module present for that frame. ``region = (y0, y1, x0, x1)`` calibrates only that
        box of every module (``frames.origin`` is then ``(y0, x0)``); it cannot be combined
        with common mode, which needs whole ASIC rows.
        """
        data, present = self.module_data(raw)
        if region is None:
            box = (slice(None), slice(None))
            origin = (0, 0)
        else:
            if self.common_mode != "none":
                raise CalibrationError("common-mode correction needs whole modules; calibrate without a region")
            y0, y1, x0, x1 = (int(v) for v in region)
            box, origin = (slice(y0, y1), slice(x0, x1)), (y0, x0)
            data = data[(slice(None), slice(None)) + box]
        ped_cm, mask, inv_gain = self._constants_in(tuple(region) if region is not None else None, box)
        if len(ped_cm) == 1:  # one pedestal (a camera): subtracted in one pass, no copy of it per frame
            self.cell_index(raw.cell_ids)  # refuses frames of a cell the dark lacks, as below
            out = np.subtract(data, ped_cm[0], dtype=np.float32)
        else:
            if raw.module_cell_ids is None:
                out = np.take(ped_cm, self.cell_index(raw.cell_ids), axis=0)  # (N, M, h, w) float32
            else:  # the modules recorded different memory cells: each module takes its own cell's pedestal
                cells = raw.select_modules(self.modules).module_cell_ids
                out = ped_cm[self.cell_index(cells), np.arange(len(self.modules))]
            np.subtract(data, out, out=out, dtype=np.float32)
        valid = data < self.type.saturation
        if self._common_mode is not None:
            self._common_mode.subtract(out, valid)
        valid &= mask
        if not present.all():
            valid &= present[:, :, None, None]
        if inv_gain is not None:
            out *= inv_gain
        zeroed = not self.type.per_pulse  # a camera's functions read whole images: its invalid pixels are 0
        if zeroed:
            np.copyto(out, 0, where=~valid)
        return Frames(data=out, valid=valid, units=self.units, train_ids=raw.train_ids,
                      pulse_ids=raw.pulse_ids, cell_ids=raw.cell_ids, modules=self.modules, origin=origin,
                      module_cell_ids=raw.select_modules(self.modules).module_cell_ids, zeroed=zeroed)

    def _constants_in(self, region: Optional[tuple], box: tuple) -> tuple:
        """Pedestal (cell-major), mask and inverse gain of a region, as contiguous arrays (cached)."""
        if region is None:
            return self._ped_cm, self.mask, self._inv_gain
        if getattr(self, "_region_cache", (None,))[0] != region:
            inv_gain = self._inv_gain
            if isinstance(inv_gain, np.ndarray) and inv_gain.ndim == 3:
                inv_gain = np.ascontiguousarray(inv_gain[(slice(None),) + box])
            self._region_cache = (region, np.ascontiguousarray(self._ped_cm[(slice(None), slice(None)) + box]),
                                  np.ascontiguousarray(self.mask[(slice(None),) + box]), inv_gain)
        return self._region_cache[1:]

    def saturated_count(self, raw: RawBatch) -> np.ndarray:
        """(N, M) int64: good pixels with a saturated raw value (>= 511) per frame and module."""
        data, _ = self.module_data(raw)
        return np.count_nonzero((data >= self.type.saturation) & self.mask, axis=(2, 3)).astype(np.int64)

    def __repr__(self) -> str:
        return (f"DetObject({self.name!r}, {self.type.name}, modules={list(self.modules)}, cells={len(self.cell_ids)}, "
                f"units={self.units!r}, common_mode={self.common_mode!r})")
