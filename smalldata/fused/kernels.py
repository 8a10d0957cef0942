"""The compiled per-pixel pass: calibration fused with the built-in functions' accumulations.

One call of :func:`fused_pass` walks a batch of raw frames once, in blocks of module
rows and, inside each block, frame by frame, so the constants of a block (inverse gain,
bin indices) and its run-sum accumulators stay in the CPU cache while every frame of the
batch goes through them. Each raw pixel is read once per frame and
calibrated once::

    value = (float32(raw) - pedestal[cell]) * inverse_gain      (float32, as numpy does it)
    valid = module present and raw < saturation and the pixel is good  (NaN inverse gain = bad pixel)

then handed, in the same pass, to every consumer the plan asked for (arrays of size 0
switch a consumer off; every argument has one fixed type, so there is one compilation,
cached on disk by numba):

- the calibrated frames themselves (for functions that are not fused);
- azimuthal bins: per frame and bin the float64 sum of valid values and their count,
  and the summed weights of the binned pixels that are *not* valid in that frame;
- ROIs: per frame float64 row and column sums of the thresholded values, valid pixels
  per row and column, the maximum, and optionally the thresholded crop;
- run sums and the cube: exact int64 fixed-point sums ``rint(value * 2**scale_bits)``,
  pixel counts, maxima, above-threshold counts and squares, as
  :mod:`smalldata.fixedformat` defines them. A block's sums over the batch are held in
  a small accumulator (float64 holds these integers exactly below 2**53) and added to
  the run's once per block, so the large arrays are touched once per batch, not per frame.

No fast-math: every float operation is the one numpy performs, so calibrated values
are the same bit for bit and the results do not depend on the batch.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from smalldata.fused.rowsums import cube_row, flush_cube, flush_sums, sum_row

#: Module rows per block: every frame of the batch goes through a block before the next one, so
#: the block's constants and run-sum accumulators stay in the cache while the raw and pedestal
#: rows stream in runs long enough for the hardware prefetcher (16 rows: 16 kB of raw data).
ROWS = 16
#: Frames whose blocks are binned together (:func:`_bin_lanes` is written for four).
LANES = 4


@njit(cache=True, nogil=True)
def fused_pass(raw, present, cell, ped, invg, mod_box,
               frame_box, frames_out, valid_out,
               az_bins, az_weight, az_n_bins, az_block_seg, az_seg_bin, az_seg_ptr, az_offset,
               az_static_cnt, az_static_bad, az_module_w, az_sum, az_cnt, az_wbad,
               roi_def, roi_thr, roi_row, roi_col, roi_rown, roi_coln, roi_max, roi_crop_off, crop_vals, crop_valid,
               rs_keep, rs_sum, rs_cnt, rs_max, rs_above, rs_thr,
               cb_group, cb_sum, cb_cnt, cb_sq, fixed, sq_bits, n_bad, saturation):
    """Calibrate a batch and feed every consumer in one pass (see the module docstring).

    Parameters
    ----------
    raw : (N, M, H, W) uint16
    present : (N, M) bool
    cell : (N, M) int64
        Index of each frame's and module's memory cell into ``ped``.
    ped : (C, M, H, W) float32
        Pedestal, cell-major.
    invg : (M, H, W) float32
        Inverse gain (1 without a gain), NaN where the static mask is bad.
    mod_box : (M, 4) int64
        Rows ``[y0, y1)`` and columns ``[x0, x1)`` of each module that any consumer reads.
    frame_box : (4,) int64
        Box written to ``frames_out`` / ``valid_out`` (N, M, y1 - y0, x1 - x0); size 0: none.
    az_bins : (K, M, H, W) int32
        Bin of each pixel for each of K azimuthal consumers (read only for pixels saturated
        in a frame); ``az_n_bins[k]`` or more = not binned.
    az_weight : (K, M, H, W) float64
        Weight of each pixel (read only where a binned pixel is not valid in a frame).
    az_n_bins : (K,) int64
    az_block_seg, az_seg_bin, az_seg_ptr, az_offset, az_static_cnt, az_static_bad, az_module_w
        The binned pixels grouped per block of rows and bin, and their static counts and
        weights (see :class:`smalldata.fused.segments.AzimuthalSegments`).
    az_sum, az_wbad : (N, K, B) float64
    az_cnt : (N, K, B) int32
    roi_def : (R, 5) int64
        Module index, y0, y1, x0, x1 of each ROI.
    roi_thr : (R, 2) float32
        Low threshold (values below count as 0; -inf: none) and high threshold (values
        above are not valid; +inf: none).
    roi_row, roi_col : (N, R, H) and (N, R, W) float64
        Sums of the thresholded valid values per ROI row and column.
    roi_rown, roi_coln : (N, R, H) and (N, R, W) int32
        Valid pixels per ROI row and column.
    roi_max : (N, R) float32
        Largest thresholded valid value (-inf without one).
    roi_crop_off : (R,) int64
        Offset of each ROI's (N, h, w) crop in ``crop_vals`` / ``crop_valid``; -1: no crop.
    rs_keep : (N,) bool
        Frames added to the run sums (size 0: no run sums).
    rs_sum, rs_cnt, rs_above : (M*H*W,) int64 (``rs_above`` size 0: no threshold)
    rs_max : (M*H*W,) float32
    rs_thr : float32
    cb_group : (N,) int64
        Cube group of each frame, -1 = not added (size 0: no cube).
    cb_sum, cb_sq : (G, M*H*W) int64 (``cb_sq`` size 0: no squares)
    cb_cnt : (G, M*H*W) int32
    fixed : (4,) float32
        ``2**scale_bits`` of the run sums and of the cube, then their value limits
        ``2**(31 - scale_bits)``.
    sq_bits : int
        ``scale_bits`` of the cube (squares are rounded back to it).
    n_bad : (1,) int64
        Incremented for each valid cube value that is not finite or beyond the limit.
    saturation : int64
        The detector type's saturation: a raw value at or above it is not valid.
    """
    n_frames, n_mod, height, width = raw.shape
    n_az = az_n_bins.shape[0]
    n_roi = roi_def.shape[0]
    do_frames = frames_out.size > 0
    do_sums = rs_keep.size > 0
    do_cube = cb_group.size > 0
    fy0, fy1, fx0, fx1 = frame_box[0], frame_box[1], frame_box[2], frame_box[3]
    # a block of calibrated rows of LANES frames: the azimuthal sums take the frames together
    vals = np.zeros((LANES, ROWS * width), dtype=np.float32)
    ok = np.empty((LANES, ROWS * width), dtype=np.bool_)
    do_above = rs_above.size > 0
    do_sq = cb_sq.size > 0
    rs_scale, cb_scale, rs_limit, cb_limit = fixed[0], fixed[1], fixed[2], fixed[3]
    # a block's run sums: fixed-point integers summed in float64 (exact below 2**53) over the batch
    blk_sum = np.empty(ROWS * width)
    blk_cnt = np.empty(ROWS * width, dtype=np.int32)
    blk_max = np.empty(ROWS * width, dtype=np.float32)
    blk_above = np.empty(ROWS * width, dtype=np.int32)
    no_sq = np.zeros(0, dtype=np.int64)
    # the cube groups of this batch, each with a block accumulator like the run sums' (flushed per block)
    n_groups = cb_sum.shape[0] if do_cube else 0
    local_of = np.full(n_groups, -1, dtype=np.int64)
    groups = np.empty(n_frames, dtype=np.int64)
    frame_local = np.full(n_frames, -1, dtype=np.int64)
    n_local = 0
    for f in range(n_frames if do_cube else 0):
        g = cb_group[f]
        if g >= 0:
            if local_of[g] < 0:
                local_of[g] = n_local
                groups[n_local] = g
                n_local += 1
            frame_local[f] = local_of[g]
    cblk_sum = np.empty((n_local, ROWS * width))
    cblk_cnt = np.empty((n_local, ROWS * width), dtype=np.int32)
    cblk_sq = np.empty((n_local if do_sq else 0, ROWS * width), dtype=np.int64)
    for m in range(n_mod):
        y0, y1, x0, x1 = mod_box[m, 0], mod_box[m, 1], mod_box[m, 2], mod_box[m, 3]
        w = x1 - x0
        for yb in range(y0, y1, ROWS):
            n_rows = min(yb + ROWS, y1) - yb
            block = (yb - y0) // ROWS
            if do_sums:  # the block's run sums, added to the run's after every frame went through
                blk_sum[:n_rows * w] = 0.0
                blk_cnt[:n_rows * w] = 0
                blk_max[:n_rows * w] = -np.inf
                blk_above[:n_rows * w] = 0
            cblk_sum[:, :n_rows * w] = 0.0
            cblk_cnt[:, :n_rows * w] = 0
            cblk_sq[:, :n_rows * w] = 0
            for f0 in range(0, n_frames, LANES):
                n_lanes = min(LANES, n_frames - f0)
                for lane in range(n_lanes):
                    f = f0 + lane
                    keep = do_sums and rs_keep[f]
                    grp = frame_local[f]
                    here = present[f, m]
                    c = cell[f, m]
                    lane_vals, lane_ok = vals[lane], ok[lane]
                    peak = np.uint16(0)
                    for r in range(n_rows):
                        y = yb + r
                        peak = max(peak, _calibrate_row(raw[f, m, y, x0:x1], ped[c, m, y, x0:x1], invg[m, y, x0:x1],
                                                         here, lane_vals[r * w:(r + 1) * w], lane_ok[r * w:(r + 1) * w],
                                                         w, saturation))
                    for r in range(n_rows):
                        y = yb + r
                        o = r * w
                        row_vals, row_ok = lane_vals[o:o + w], lane_ok[o:o + w]
                        if do_frames and fy0 <= y < fy1:
                            _write_row(row_vals[fx0 - x0:fx1 - x0], row_ok[fx0 - x0:fx1 - x0],
                                       frames_out[f, m, y - fy0], valid_out[f, m, y - fy0])
                        for i in range(n_roi):
                            if roi_def[i, 0] == m and roi_def[i, 1] <= y < roi_def[i, 2]:
                                _roi_row(row_vals, row_ok, f, i, y, x0, roi_def, roi_thr, roi_row, roi_col, roi_rown,
                                         roi_coln, roi_max, roi_crop_off, crop_vals, crop_valid)
                        if keep:
                            sum_row(row_vals, row_ok, w, blk_sum[o:o + w], blk_cnt[o:o + w], blk_max[o:o + w],
                                     blk_above[o:o + w], rs_thr, rs_scale, rs_limit)
                        if grp >= 0:
                            n_bad[0] += cube_row(row_vals, row_ok, w, cblk_sum[grp, o:o + w],
                                                  cblk_cnt[grp, o:o + w], cblk_sq[grp, o:o + w] if do_sq else no_sq,
                                                  cb_scale, cb_limit, sq_bits)
                    if here and peak >= saturation:  # rare: binned pixels not valid in this frame only
                        for k in range(n_az):
                            _unbin_saturated(lane_ok, invg[m], az_bins[k, m], az_weight[k, m], az_n_bins[k], yb,
                                             n_rows, x0, w, az_cnt[f, k], az_wbad[f, k])
                for k in range(n_az):  # absent modules hold 0 in vals: adding their sums changes nothing
                    _bin_lanes(vals, n_lanes, az_seg_bin, az_seg_ptr, az_offset, az_block_seg[k, m, block],
                               az_block_seg[k, m, block + 1], az_sum[f0:f0 + n_lanes, k])
            if do_sums:
                for r in range(n_rows):
                    pix0 = (m * height + yb + r) * width + x0
                    o = r * w
                    flush_sums(blk_sum[o:o + w], blk_cnt[o:o + w], blk_max[o:o + w], blk_above[o:o + w],
                                rs_sum[pix0:pix0 + w], rs_cnt[pix0:pix0 + w], rs_max[pix0:pix0 + w],
                                rs_above[pix0:pix0 + w] if do_above else rs_above)
            for g in range(n_local):
                for r in range(n_rows):
                    pix0 = (m * height + yb + r) * width + x0
                    o = r * w
                    flush_cube(cblk_sum[g, o:o + w], cblk_cnt[g, o:o + w], cblk_sq[g, o:o + w] if do_sq else no_sq,
                                cb_sum[groups[g], pix0:pix0 + w], cb_cnt[groups[g], pix0:pix0 + w],
                                cb_sq[groups[g], pix0:pix0 + w] if do_sq else no_sq)
    for f in range(n_frames):  # the static part of counts and weights: per module present or absent
        for k in range(n_az):
            for m in range(n_mod):
                if present[f, m]:
                    az_cnt[f, k] += az_static_cnt[k, m]
                    az_wbad[f, k] += az_static_bad[k, m]
                else:
                    az_wbad[f, k] += az_module_w[k, m]


@njit(cache=True, nogil=True, inline="always")
def _calibrate_row(raw_row, ped_row, gain_row, here, vals, ok, w, saturation):
    """``(raw - pedestal) * inverse gain`` and validity of one row; 0 where not valid.

    Returns the largest raw value of the statically good pixels: a saturated one
    (``>= saturation``) sends the block to the rare path. A maximum, not a count: LLVM
    vectorises it, where a count of booleans costs as much as the calibration itself.
    """
    peak = np.uint16(0)
    for j in range(w):
        r = raw_row[j]
        g = gain_row[j]
        v = (np.float32(r) - ped_row[j]) * g
        static_good = g == g
        good = (r < saturation) & static_good & here
        vals[j] = v if good else np.float32(0.0)
        ok[j] = good
        peak = max(peak, r if static_good else np.uint16(0))
    return peak


@njit(cache=True, nogil=True, inline="always")
def _write_row(vals, ok, out_row, ok_row):
    """Calibrated values (0 where not valid) and validity for functions that read frames."""
    for j in range(out_row.shape[0]):
        out_row[j] = vals[j]
        ok_row[j] = ok[j]


@njit(cache=True, nogil=True, inline="always")
def _bin_lanes(vals, n_lanes, seg_bin, seg_ptr, offset, s0, s1, sums):
    """Add a block of ``n_lanes`` (up to :data:`LANES`) frames to their bins.

    Each segment's pixels are summed in pixel order for the frames together: one offset
    read serves every frame, and the frames' additions do not wait on each other. Invalid
    pixels hold 0 in ``vals``; lanes from ``n_lanes`` on are not used.
    """
    for s in range(s0, s1):
        a0 = a1 = a2 = a3 = 0.0
        for p in range(seg_ptr[s], seg_ptr[s + 1]):
            o = offset[p]
            a0 += np.float64(vals[0, o])
            a1 += np.float64(vals[1, o])
            a2 += np.float64(vals[2, o])
            a3 += np.float64(vals[3, o])
        b = seg_bin[s]
        sums[0, b] += a0
        if n_lanes > 1:
            sums[1, b] += a1
        if n_lanes > 2:
            sums[2, b] += a2
        if n_lanes > 3:
            sums[3, b] += a3


@njit(cache=True, nogil=True)
def _unbin_saturated(ok, invg, bins, weights, n_bins, yb, n_rows, x0, w, counts, wbad):
    """Take the binned, statically good pixels of a block that are not valid in this frame
    out of the counts and into the weights of invalid pixels."""
    for r in range(n_rows):
        for j in range(w):
            if not ok[r * w + j] and invg[yb + r, x0 + j] == invg[yb + r, x0 + j]:
                b = bins[yb + r, x0 + j]
                if b < n_bins:
                    counts[b] -= 1
                    wbad[b] += weights[yb + r, x0 + j]


@njit(cache=True, nogil=True)
def _roi_row(vals, ok, f, i, y, x0, roi_def, roi_thr, roi_row, roi_col, roi_rown, roi_coln, roi_max,
             roi_crop_off, crop_vals, crop_valid):
    """One row of ROI ``i`` in frame ``f``: thresholds, row and column sums, counts, maximum, crop."""
    ry = y - roi_def[i, 1]
    rx0, rw = roi_def[i, 3] - x0, roi_def[i, 4] - roi_def[i, 3]
    low, high = roi_thr[i, 0], roi_thr[i, 1]
    off = roi_crop_off[i]
    base = max(off, 0) + (f * (roi_def[i, 2] - roi_def[i, 1]) + ry) * rw
    crop_row = crop_vals[base:base + rw] if off >= 0 else crop_vals[:0]
    crop_ok = crop_valid[base:base + rw] if off >= 0 else crop_valid[:0]
    col = roi_col[f, i]
    coln = roi_coln[f, i]
    row_acc = 0.0
    row_n = 0
    vmax = roi_max[f, i]
    for j in range(rw):
        v = vals[rx0 + j]
        good = ok[rx0 + j] and v <= high
        if not good or v < low:
            v = np.float32(0.0)
        if good:
            row_n += 1
            coln[j] += 1
            if v > vmax:
                vmax = v
            row_acc += np.float64(v)
            col[j] += np.float64(v)
        if off >= 0:
            crop_row[j] = v
            crop_ok[j] = good
    roi_row[f, i, ry] += row_acc
    roi_rown[f, i, ry] += row_n
    roi_max[f, i] = vmax
