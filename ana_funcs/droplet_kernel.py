"""The compiled droplet finder: one pass over the pixels, union-find over those above threshold.

:func:`droplet_pass` walks each plane (one module of one frame, or a 2-D crop) in raster
order. A pixel that is valid and above the grow threshold gets the next index of the
plane's list and is joined (union-find, the smaller index is the root) with its left and
upper neighbours when they are in the list too and in the same block (DSSC ASIC), so
components are 4-connected and never cross a block border. A second walk over the list
only numbers the components in order of their first pixel and sums, per droplet and in
raster order, the value, ``value * row`` and ``value * column`` in float64, exactly what
:func:`numpy.bincount` does in the reference implementation
(:mod:`smalldata.funcs.droplet_find`); droplets without a seed pixel or below ``min_sum``
are dropped before they are written. No fast-math: the numbers equal the reference's bit
for bit.

The comparisons are made in the precision numpy uses for ``data > threshold``: the
caller passes scalar thresholds in the data's dtype and per-pixel thresholds in their own.

Memory: the pass writes into a :class:`Workspace` that lives as long as the thread and
grows only when a batch needs more, and returns where it stopped when the room is short,
so that no buffer is reallocated and copied while running. Fresh memory is expensive
(the kernel zero-fills every new page on first touch), and a batch's droplets are
written once, then copied out at their exact size.
"""
from __future__ import annotations

import threading
from typing import Tuple

import numpy as np
from numba import njit

#: Output entries (pixels, droplets) of a new workspace; it grows as batches need.
INITIAL_CAPACITY = 1 << 16


class Workspace:
    """Scratch and output arrays of :func:`droplet_pass`, kept for the next batch of this thread."""

    def __init__(self):
        self.plane_size = 0
        self.width = 0
        self.scratch_i = np.zeros((5, 0), np.int64)
        self.scratch_f = np.zeros((4, 0), np.float64)
        self.hit = np.zeros(0, np.uint8)
        self.line = np.zeros((3, 0), np.int64)
        self.p_int = np.zeros((4, 0), np.int64)
        self.p_val = np.zeros(0, np.float64)
        self.d_int = np.zeros((2, 0), np.int64)
        self.d_val = np.zeros((3, 0), np.float64)

    def fit_planes(self, height: int, width: int) -> None:
        """Room for the scratch of one (height, width) plane."""
        if height * width > self.plane_size or width > self.width:
            self.plane_size = max(self.plane_size, height * width)
            self.width = max(self.width, width)
            self.scratch_i = np.empty((5, self.plane_size), np.int64)
            self.scratch_f = np.empty((4, self.plane_size), np.float64)
            self.hit = np.empty(2 * self.plane_size + self.width, np.uint8)
            self.line = np.empty((3, self.width), np.int64)

    def grow(self, n_pix: int, n_drop: int, with_pixels: bool) -> None:
        """Keep the first ``n_pix`` pixels and ``n_drop`` droplets and make room for another plane."""
        need = self.plane_size
        if n_drop + need > self.d_val.shape[1]:
            size = max(INITIAL_CAPACITY, 2 * self.d_val.shape[1], n_drop + need)
            self.d_int = _extended(self.d_int, n_drop, size)
            self.d_val = _extended(self.d_val, n_drop, size)
        if with_pixels and n_pix + need > len(self.p_val):
            size = max(INITIAL_CAPACITY, 2 * len(self.p_val), n_pix + need)
            self.p_int = _extended(self.p_int, n_pix, size)
            self.p_val = _extended(self.p_val, n_pix, size)


def _extended(a: np.ndarray, used: int, size: int) -> np.ndarray:
    """A larger array (``size`` along the last axis) holding the first ``used`` entries of ``a``."""
    b = np.empty(a.shape[:-1] + (size,), a.dtype)
    b[..., :used] = a[..., :used]
    return b


_local = threading.local()


def find_in_stack(stack: np.ndarray, valid: np.ndarray, seed: np.ndarray, grow: np.ndarray, per_pixel: bool,
                  planes_per_event: int, block: Tuple[int, int], min_sum: float, with_pixels: bool) -> tuple:
    """Run :func:`droplet_pass` over a whole (K, H, W) stack in this thread's :class:`Workspace`.

    Returns
    -------
    tuple
        pixel plane, row, column, droplet (int64) and value (float64), copies, or five None
        without ``with_pixels``; then the droplets' stack plane (int64), summed value, sums of
        ``value * row`` and ``value * column`` (float64) and pixel count (int64): views of the
        thread's workspace, valid until its next call (copy what is kept).
    """
    work = getattr(_local, "workspace", None)
    if work is None:
        work = _local.workspace = Workspace()
    height, width = stack.shape[1:]
    work.fit_planes(height, width)
    k, n_pix, n_drop = 0, 0, 0
    while k < len(stack):
        work.grow(n_pix, n_drop, with_pixels)
        k, n_pix, n_drop = droplet_pass(stack, valid, seed, grow, per_pixel, planes_per_event, block[0], block[1],
                                        min_sum, with_pixels, k, n_pix, n_drop, work.scratch_i, work.scratch_f,
                                        work.hit, work.line, work.p_int, work.p_val, work.d_int, work.d_val)
    if with_pixels:
        pixels = tuple(work.p_int[i, :n_pix].copy() for i in range(4)) + (work.p_val[:n_pix].copy(),)
    else:
        pixels = (None,) * 5
    return pixels + (work.d_int[0, :n_drop], work.d_val[0, :n_drop], work.d_val[1, :n_drop], work.d_val[2, :n_drop],
                     work.d_int[1, :n_drop])


@njit(cache=True, nogil=True)
def _root(parent, i):
    """Root of ``i`` (path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _join(parent, a, b):
    """Merge the components of ``a`` and ``b``; the smaller root (first in raster order) stays."""
    ra = _root(parent, a)
    rb = _root(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@njit(cache=True, nogil=True)
def droplet_pass(data, valid, seed, grow, per_pixel, planes_per_event, block_h, block_w, min_sum, with_pixels,
                 start, n_pix, n_drop, scratch_i, scratch_f, hit, line, p_int, p_val, d_int, d_val):
    """Droplets of the planes ``start, start + 1, ...`` of a stack (see the module docstring).

    Parameters
    ----------
    data : (K, H, W) float32 or float64, C-contiguous
        Pixel values; plane ``k`` is plane ``k % planes_per_event`` of event ``k // planes_per_event``.
    valid : (K, H, W) bool, C-contiguous
        True = good pixel.
    seed, grow : (P, H, W) arrays when ``per_pixel``, else (1, 1, 1)
        A droplet holds a pixel ``> seed``; its pixels are ``> grow``.
    per_pixel : bool
    planes_per_event : int
    block_h, block_w : int
        Blocks never connected to each other (H, W when there is no cut).
    min_sum : float
        Droplets whose summed value is below this are dropped (when > 0).
    with_pixels : bool
        Also write every droplet pixel.
    start, n_pix, n_drop : int
        First plane to do, pixels and droplets written so far.
    scratch_i : (5, >= H * W) int64, scratch_f : (4, >= H * W) float64, hit : (>= 2 * H * W + W) uint8,
    line : (3, >= W) int64
        Scratch of one plane.
    p_int : (4, cap_pix) int64, p_val : (cap_pix,) float64
        Out: plane, row, column and droplet of each pixel; its value.
    d_int : (2, cap_drop) int64, d_val : (3, cap_drop) float64
        Out: stack plane and pixel count of each droplet; its summed value, and the sums of
        ``value * row`` and ``value * column``.

    Returns
    -------
    next_plane, n_pix, n_drop : int
        ``next_plane < K`` when the output arrays have less than ``H * W`` free entries
        left before that plane: grow them and call again from there.
    """
    n_planes, height, width = data.shape
    plane_size = height * width
    loc, parent, label, l_npix, l_new = scratch_i[0], scratch_i[1], scratch_i[2], scratch_i[3], scratch_i[4]
    val, l_adu, l_row, l_col = scratch_f[0], scratch_f[1], scratch_f[2], scratch_f[3]
    is_seed = hit[:plane_size]
    l_seed = hit[plane_size:2 * plane_size]
    cols, last_row, last_idx = line[0], line[1], line[2]
    row_hit = hit[2 * plane_size:2 * plane_size + width]
    for k in range(start, n_planes):
        if n_drop + plane_size > d_val.shape[1] or (with_pixels and n_pix + plane_size > len(p_val)):
            return k, n_pix, n_drop
        tp = k % planes_per_event
        n = 0
        last_row[:width] = -1  # per column: the row of its last pixel in the list, and that pixel
        for r in range(height):
            # the columns of the row's pixels above threshold: a vectorised test, then a
            # compaction without branches
            if per_pixel:
                for c in range(width):
                    row_hit[c] = (data[k, r, c] > grow[tp, r, c]) & valid[k, r, c]
            else:
                g = grow[0, 0, 0]
                for c in range(width):
                    row_hit[c] = (data[k, r, c] > g) & valid[k, r, c]
            m = 0
            for c in range(width):
                cols[m] = c
                m += row_hit[c]
            link_up = r % block_h != 0
            for j in range(m):
                c = cols[j]
                v = data[k, r, c]
                parent[n] = n
                loc[n] = r * width + c
                val[n] = v
                if per_pixel:
                    is_seed[n] = v > seed[tp, r, c]
                else:
                    is_seed[n] = v > seed[0, 0, 0]
                if j > 0 and cols[j - 1] == c - 1 and c % block_w != 0:
                    parent[n] = _root(parent, n - 1)
                if link_up and last_row[c] == r - 1:
                    _join(parent, n, last_idx[c])
                last_row[c] = r
                last_idx[c] = n
                n += 1
        if n == 0:
            continue
        # number the components by their first pixel and sum them in raster order
        n_lab = 0
        for i in range(n):
            root = _root(parent, i)
            if root == i:
                lab = n_lab
                n_lab += 1
                l_adu[lab] = 0.0
                l_row[lab] = 0.0
                l_col[lab] = 0.0
                l_npix[lab] = 0
                l_seed[lab] = False
            else:
                lab = label[root]
            label[i] = lab
            row = loc[i] // width
            col = loc[i] - row * width
            l_adu[lab] += val[i]
            l_row[lab] += val[i] * row
            l_col[lab] += val[i] * col
            l_npix[lab] += 1
            l_seed[lab] = l_seed[lab] | is_seed[i]
        # keep the seeded droplets (of at least min_sum) and write them out
        for lab in range(n_lab):
            if l_seed[lab] and (min_sum <= 0 or l_adu[lab] >= min_sum):
                l_new[lab] = n_drop
                d_int[0, n_drop] = k
                d_int[1, n_drop] = l_npix[lab]
                d_val[0, n_drop] = l_adu[lab]
                d_val[1, n_drop] = l_row[lab]
                d_val[2, n_drop] = l_col[lab]
                n_drop += 1
            else:
                l_new[lab] = -1
        if with_pixels:
            for i in range(n):
                d = l_new[label[i]]
                if d >= 0:
                    row = loc[i] // width
                    p_int[0, n_pix] = k
                    p_int[1, n_pix] = row
                    p_int[2, n_pix] = loc[i] - row * width
                    p_int[3, n_pix] = d
                    p_val[n_pix] = val[i]
                    n_pix += 1
    return n_planes, n_pix, n_drop


def droplet_fields(stack_plane, adu, sum_row, sum_col, npix, planes_per_event: int, n_events: int) -> tuple:
    """Per-droplet fields of a :class:`~smalldata.funcs.droplet_find.DropletSet`, as new arrays.

    Event and plane of each droplet's stack plane, its summed value and pixel count, its
    centre of mass ``sum / adu`` (the division numpy performs: NaN or inf for a zero sum),
    and per event the droplets and their summed value (added in droplet order, as
    ``numpy.bincount`` does). The arrays are numpy's (which asks for huge pages for large
    ones: far fewer page faults than numba's allocations), filled by :func:`_fill_fields`.
    """
    n = len(adu)
    out = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64),
           np.empty(n, np.float64), np.empty(n, np.int64), np.zeros(n_events, np.int64),
           np.zeros(n_events, np.float64))
    _fill_fields(stack_plane, adu, sum_row, sum_col, npix, planes_per_event, *out)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _fill_fields(stack_plane, adu, sum_row, sum_col, npix, planes_per_event,
                 event, plane, adu_out, row, col, npix_out, counts, event_adu):
    """Fill :func:`droplet_fields`' arrays."""
    for i in range(len(adu)):
        e = stack_plane[i] // planes_per_event
        event[i] = e
        plane[i] = stack_plane[i] - e * planes_per_event
        a = adu[i]
        adu_out[i] = a
        row[i] = sum_row[i] / a
        col[i] = sum_col[i] / a
        npix_out[i] = npix[i]
        counts[e] += 1
        event_adu[e] += a
