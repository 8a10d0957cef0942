"""Detector geometry for the session: assembling images and converting coordinates.

Three coordinate systems, each convertible into the others:

* **assembled-image pixels** ``(row, col)``: indices into the 2-D image of
  :meth:`ImageGeometry.assemble` (extra-geom's snapped grid); rows follow y, columns x;
* **module pixels** ``(module, row, col)``: detector module and the pixel's row and column
  in the module's data array (the DSSC: modules 0..15, rows 0..127, columns 0..511; the
  geometry's own :attr:`ImageGeometry.n_modules` and :attr:`ImageGeometry.module_shape`);
  fractional values are allowed, an integer value is the pixel's centre;
* **metres** ``(x, y)``: the detector plane in extra-geom's frame (the frame of the
  producer's azimuthal ``center`` and of the simulator's ``beam_center``).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np

from smalldata.constants import DSSC_DEFAULT_QUAD_POSITIONS
from smalldata.errors import SmallDataError
from smalldata.geometry.positions import load_dssc_geometry


class ImageGeometry:
    """The DSSC geometry of one set of quadrant positions, with coordinate conversions.

    Parameters
    ----------
    geometry_file : path, optional
        extra-geom DSSC geometry file (default: the one extra-geom ships).
    quadrant_positions : 4 x 2 floats
        Quadrant corner positions in metres.
    """

    def __init__(self, geometry_file: Optional[os.PathLike] = None,
                 quadrant_positions: Sequence[Sequence[float]] = DSSC_DEFAULT_QUAD_POSITIONS):
        self.geometry_file = None if geometry_file is None else os.fspath(geometry_file)
        self.quadrant_positions = np.asarray(quadrant_positions, dtype=float)
        self.geom = load_dssc_geometry(self.geometry_file, self.quadrant_positions)
        #: modules of the detector and pixels (rows, columns) of a module, as the geometry lays them out
        self.n_modules = int(self.geom.expected_data_shape[0])
        self.module_shape: Tuple[int, int] = tuple(int(v) for v in self.geom.expected_data_shape[1:])
        #: pixels of one module
        self.module_pixels = self.module_shape[0] * self.module_shape[1]
        index = np.arange(self.n_modules * self.module_pixels, dtype=np.float64)
        index = index.reshape((self.n_modules,) + self.module_shape)
        assembled, centre = self.geom.position_modules(index)
        #: flat module-pixel index (module * module_pixels + row * columns + col) of each assembled pixel, -1 for none
        self.index_map = np.where(np.isfinite(assembled), assembled, -1).astype(np.int64)
        #: assembled-image (row, col) of the pixel that holds the origin (x, y) = (0, 0)
        self.centre = np.asarray(centre, dtype=float)
        # the snapped grid's pixel (x, y) size in metres; DSSC's hexagons give a non-square grid
        self.pixel_shape = np.asarray(self.geom._pixel_shape, dtype=float)
        tiles = [t for module in self.geom.modules for t in module]
        self._corner = np.array([t.corner_pos[:2] for t in tiles])
        self._basis = np.array([np.column_stack([t.ss_vec[:2], t.fs_vec[:2]]) for t in tiles])
        self._tile_shape = (self.geom.frag_ss_pixels, self.geom.frag_fs_pixels)
        self._positions: Optional[np.ndarray] = None
        self._drawn_at: Optional[np.ndarray] = None

    @property
    def shape(self) -> Tuple[int, int]:
        """Shape of an assembled image."""
        return self.index_map.shape

    def __repr__(self) -> str:
        quads = ", ".join(f"({x * 1e3:.3f}, {y * 1e3:.3f})" for x, y in self.quadrant_positions)
        return f"ImageGeometry(quadrant_positions mm [{quads}], file {self.geometry_file or 'extra-geom default'})"

    # ------------------------------------------------------------------ images
    def full(self, data: np.ndarray, modules: Sequence[int]) -> np.ndarray:
        """(modules, rows, columns) float32 with ``data`` (M, rows, columns) at ``modules``, NaN elsewhere."""
        data = np.asarray(data)
        modules = list(modules)
        if data.ndim != 3 or data.shape[1:] != self.module_shape or data.shape[0] != len(modules):
            raise SmallDataError(f"image of shape {data.shape} does not match modules {modules}; "
                                 f"need ({len(modules)}, {self.module_shape[0]}, {self.module_shape[1]})")
        full = np.full((self.n_modules,) + self.module_shape, np.nan, dtype=np.float32)
        full[modules] = data
        return full

    def assemble(self, data: np.ndarray, modules: Sequence[int]) -> np.ndarray:
        """The 2-D image of module images ``data`` (M, rows, columns) placed at their ``modules``."""
        out, _ = self.geom.position_modules(self.full(data, modules))
        return out

    def module_array(self, assembled_mask: np.ndarray, modules: Sequence[int], fill: bool = False) -> np.ndarray:
        """Module-pixel (M, rows, columns) bool of an assembled-image bool array (``fill`` off the image)."""
        out = np.full(self.n_modules * self.module_pixels, fill, dtype=bool)
        on = self.index_map >= 0
        out[self.index_map[on]] = np.asarray(assembled_mask, dtype=bool)[on]
        return out.reshape((self.n_modules,) + self.module_shape)[list(modules)]

    # ------------------------------------------------------------------ conversions
    def pixel_to_metres(self, row, col) -> Tuple[np.ndarray, np.ndarray]:
        """Assembled-image (row, col) -> (x, y) in metres (pixel centres at integer values)."""
        x = (np.asarray(col, dtype=float) - self.centre[1] + 0.5) * self.pixel_shape[0]
        y = (np.asarray(row, dtype=float) - self.centre[0] + 0.5) * self.pixel_shape[1]
        return x, y

    def metres_to_pixel(self, x, y) -> Tuple[np.ndarray, np.ndarray]:
        """(x, y) in metres -> assembled-image (row, col), fractional."""
        col = np.asarray(x, dtype=float) / self.pixel_shape[0] + self.centre[1] - 0.5
        row = np.asarray(y, dtype=float) / self.pixel_shape[1] + self.centre[0] - 0.5
        return row, col

    def positions(self, modules: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel centres x, y (each (M, rows, columns), metres) of ``modules``, as the producer uses them."""
        if self._positions is None:
            self._positions = self.geom.get_pixel_positions()
        pos = self._positions[list(modules)]
        return pos[..., 0], pos[..., 1]

    def _tile_of(self, module, col):
        n_fs = self._tile_shape[1]
        in_module = np.clip(np.floor((np.asarray(col) + 0.5) / n_fs), 0, self.geom.n_tiles_per_module - 1)
        return np.asarray(module, dtype=int) * self.geom.n_tiles_per_module + in_module.astype(int)

    def module_to_metres(self, module, row, col) -> Tuple[np.ndarray, np.ndarray]:
        """Module pixel (module, row, col) -> (x, y) in metres.

        Integer coordinates give the pixel centres of extra-geom's ``get_pixel_positions``
        (hexagonal rows included); fractions step along the pixel's tile.
        """
        module, row, col = np.broadcast_arrays(np.asarray(module, dtype=int), np.asarray(row, dtype=float),
                                               np.asarray(col, dtype=float))
        r0 = np.clip(np.rint(row), 0, self.module_shape[0] - 1).astype(int)
        c0 = np.clip(np.rint(col), 0, self.module_shape[1] - 1).astype(int)
        if self._positions is None:
            self._positions = self.geom.get_pixel_positions()
        base = self._positions[module, r0, c0]
        basis = self._basis[self._tile_of(module, c0)]
        d_ss, d_fs = row - r0, col - c0
        x = base[..., 0] + basis[..., 0, 0] * d_ss + basis[..., 0, 1] * d_fs
        y = base[..., 1] + basis[..., 1, 0] * d_ss + basis[..., 1, 1] * d_fs
        return x, y

    def metres_to_module(self, x, y) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y) in metres -> module pixel (module, row, col), fractional; module -1 where no pixel is."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        point = np.stack([x.ravel(), y.ravel()], axis=-1)
        module = np.full(point.shape[0], -1)
        row = np.full(point.shape[0], np.nan)
        col = np.full(point.shape[0], np.nan)
        n_ss, n_fs = self._tile_shape
        per_module = self.geom.n_tiles_per_module
        for t, (corner, basis) in enumerate(zip(self._corner, self._basis)):
            ss, fs = np.linalg.solve(basis, (point - corner).T)
            inside = (ss >= 0) & (ss < n_ss) & (fs >= 0) & (fs < n_fs) & (module < 0)
            module[inside] = t // per_module
            row[inside] = ss[inside] - 0.5
            col[inside] = fs[inside] + (t % per_module) * n_fs - 0.5
        on = module >= 0
        if on.any():  # step from the nearest pixel centre (hexagonal rows are shifted)
            cx, cy = self.module_to_metres(module[on], np.rint(row[on]), np.rint(col[on]))
            basis = self._basis[self._tile_of(module[on], np.rint(col[on]))]
            delta = np.linalg.solve(basis, np.stack([point[on, 0] - cx, point[on, 1] - cy], axis=-1)[..., None])
            row[on] = np.rint(row[on]) + delta[:, 0, 0]
            col[on] = np.rint(col[on]) + delta[:, 1, 0]
        return module.reshape(x.shape), row.reshape(x.shape), col.reshape(x.shape)

    def pixel_to_module(self, row, col) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Assembled-image (row, col) -> the module pixel drawn there (module -1: none)."""
        row = np.rint(np.asarray(row, dtype=float)).astype(int)
        col = np.rint(np.asarray(col, dtype=float)).astype(int)
        h, w = self.shape
        on = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        flat = np.where(on, self.index_map[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)], -1)
        module, rest = np.divmod(flat, self.module_pixels)
        r, c = np.divmod(rest, self.module_shape[1])
        none = flat < 0
        return np.where(none, -1, module), np.where(none, -1, r), np.where(none, -1, c)

    def module_to_pixel(self, module, row, col) -> Tuple[np.ndarray, np.ndarray]:
        """Module pixel -> assembled-image (row, col) where it is drawn (fractions step along the tile)."""
        module, row, col = np.broadcast_arrays(np.asarray(module, dtype=int), np.asarray(row, dtype=float),
                                               np.asarray(col, dtype=float))
        if self._drawn_at is None:
            drawn = np.full((self.n_modules * self.module_pixels, 2), -1, dtype=np.int64)
            rows, cols = np.nonzero(self.index_map >= 0)
            drawn[self.index_map[rows, cols]] = np.stack([rows, cols], axis=-1)
            self._drawn_at = drawn
        rows, cols = self.module_shape
        r0 = np.clip(np.rint(row), 0, rows - 1).astype(int)
        c0 = np.clip(np.rint(col), 0, cols - 1).astype(int)
        at = self._drawn_at[(module * rows + r0) * cols + c0]
        x, y = self.module_to_metres(module, row, col)
        x0, y0 = self.module_to_metres(module, r0, c0)
        return at[..., 0] + (y - y0) / self.pixel_shape[1], at[..., 1] + (x - x0) / self.pixel_shape[0]
