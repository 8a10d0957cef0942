"""Analyse a small-data file with plain h5py and numpy: the ring's pump-probe effect against the delay.

The ring's q range is found in the data: the q bins where the median over pixels of the run's
unpumped mean image (from the cube, per q bin of the azimuthal function's q map) is above half
its peak, leaving out the pixels of the config's ROIs (other regions: the demo's speckle). The
median, not the mean, so a bright spot covering part of a q bin does not move it. Then two ways
that must agree, each pumped / unpumped per delay:

- per frame: the ring's photons (the azimuthal average times the pixels of each q bin, summed
  over the ring's bins) of the kept frames (rejection reason 0), summed per label and divided by
  the summed XGM energies, with the standard error of a ratio of sums;
- from the cube written in the same pass: the mean images of the ring's pixels, summed, over
  the mean XGM energy of the same bin and label.

With ``--truth FILE`` (the simulator's truth file) the planted pump factor of each delay is
printed beside them. On the simulator's runs both ratios are the planted factor within 3 of the
printed standard errors (tests/test_examples.py checks it).

Usage: python examples/analyse_output.py [demo_data/smalldata/r0614.h5] [--truth r0614-truth.h5]
"""
import argparse

import h5py
import numpy as np


def roi_pixels(f, det="dssc"):
    """(modules, 128, 512) bool: the pixels of the config's ROI functions (other regions, e.g. the speckle)."""
    modules = list(f[f"UserDataCfg/{det}/modules"][()])
    pixels = np.zeros((len(modules), 128, 512), dtype=bool)
    for group in f[f"UserDataCfg/{det}"].values():
        attrs = group.attrs if isinstance(group, h5py.Group) else {}
        if str(attrs.get("type", "")).endswith(":ROI") and attrs.get("module") in modules:
            y0, y1, x0, x1 = (int(v) for v in attrs["roi"])
            pixels[modules.index(attrs["module"]), y0:y1, x0:x1] = True
    return pixels


def ring_q_range(f, det="dssc", func="azav"):
    """(q_low, q_high) in m^-1: the q bins where the median unpumped intensity is above half its peak.

    The pixels of the config's ROIs are left out of the search (the demo's speckle region is
    one; with few modules a bright region can fill most of a q bin), unless they are most pixels.
    """
    cfg = f[f"UserDataCfg/{det}/{func}"]
    edges, q_map, used = cfg["q_edges"][:], cfg["q_map"][:], cfg["pixel_mask"][:]
    rois = roi_pixels(f, det)
    if (used & ~rois).sum() > 0.5 * used.sum():
        used = used & ~rois
    cube = f[f"Sums/{det}_cube"]
    labels = list(cube["labels"].asstr()[:])
    off = labels.index("unpumped")
    total = cube["sum"][:, off].sum(axis=0)
    count = cube["pixel_count"][:, off].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    ok = used & np.isfinite(mean)
    index = np.digitize(q_map[ok], edges) - 1
    values = mean[ok]
    medians = np.full(len(edges) - 1, np.nan)
    for b in range(len(edges) - 1):
        in_bin = values[index == b]
        if in_bin.size:
            medians[b] = np.median(in_bin)
    peak = int(np.nanargmax(medians))
    base = np.nanmin(medians)
    above = np.nan_to_num(medians, nan=base) > base + 0.5 * (medians[peak] - base)
    lo = hi = peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    while hi < len(above) - 1 and above[hi + 1]:
        hi += 1
    return float(edges[lo]), float(edges[hi + 1])


def _ratio_of_sums(y, w):
    """sum(y) / sum(w) and its standard error sqrt(sum((y - R w)^2)) / sum(w)."""
    ratio = y.sum() / w.sum()
    return ratio, np.sqrt(((y - ratio * w) ** 2).sum()) / w.sum()


def per_frame_effect(f, q_range, det="dssc", func="azav"):
    """Rows (delay, pumped, unpumped, ratio, ratio_err) of the ring's photons per uJ of the kept frames."""
    labels = list(f["UserDataCfg/frames/pattern"].attrs["labels"])
    label = np.array(labels)[f["pattern/label_id"][:]]
    kept = f["rejection/reasons"][:] == 0
    delay = f["scan/delay"][:]
    xgm = f["xgm/sa3_intensity"][:].astype(np.float64)
    cfg = f[f"UserDataCfg/{det}/{func}"]
    edges = cfg["q_edges"][:]
    pixels = np.bincount(np.digitize(cfg["q_map"][:][cfg["pixel_mask"][:]], edges) - 1,
                         minlength=len(edges) + 1)[:len(edges) - 1]
    centres = 0.5 * (edges[1:] + edges[:-1])
    in_ring = (centres > q_range[0]) & (centres < q_range[1])
    azav = f[f"{det}/{func}_mean"][:, 0, :].astype(np.float64)       # (frames, q) mean per pixel
    ring = (azav[:, in_ring] * pixels[in_ring]).sum(axis=1)          # the ring's (corrected) photons
    rows = []
    for d in np.unique(delay[np.isfinite(delay)]):
        sel = kept & (delay == d) & np.isfinite(ring) & np.isfinite(xgm)
        on, off = sel & (label == "pumped"), sel & (label == "unpumped")
        r_on, e_on = _ratio_of_sums(ring[on], xgm[on])
        r_off, e_off = _ratio_of_sums(ring[off], xgm[off])
        ratio = r_on / r_off
        rows.append((d, r_on, r_off, ratio, ratio * np.hypot(e_on / r_on, e_off / r_off)))
    return rows


def cube_effect(f, q_range, det="dssc", func="azav"):
    """Rows (delay, pumped, unpumped, ratio, nan) from the cube: the ring pixels' mean images over the mean XGM."""
    cfg = f[f"UserDataCfg/{det}/{func}"]
    q_map, used = cfg["q_map"][:], cfg["pixel_mask"][:]
    ring = used & (q_map > q_range[0]) & (q_map < q_range[1])
    cube = f[f"Sums/{det}_cube"]
    labels = list(cube["labels"].asstr()[:])
    on_i, off_i = labels.index("pumped"), labels.index("unpumped")
    sums, counts = cube["sum"][:][..., ring], cube["pixel_count"][:][..., ring]     # (bins, labels, pixels)
    xgm_mean = cube["xgm_sum"][:] / cube["xgm_count"][:]
    good = (counts[:, on_i] > 0) & (counts[:, off_i] > 0)                           # pixels good in both labels
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    signal = np.where(good[:, None], mean, 0.0).sum(axis=2) / xgm_mean
    on, off = signal[:, on_i], signal[:, off_i]
    return [(d, a, b, a / b, np.nan) for d, a, b in zip(cube["bin_centres"][:], on, off)]


def planted_factors(truth_path):
    """{delay: mean planted pump factor of the pumped X-ray frames} from the simulator's truth file."""
    with h5py.File(truth_path, "r") as t:
        delay, factor = t["frame_delay"][:], t["frame_pump_factor"][:]
        pumped = t["frame_laser"][:] & t["frame_xray"][:]
    return {d: float(factor[pumped & (delay == d)].mean()) for d in np.unique(delay[pumped])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="The ring's pump-probe effect of a small-data file.")
    parser.add_argument("path", nargs="?", default="demo_data/smalldata/r0614.h5")
    parser.add_argument("--truth", help="the simulator's truth file: print the planted pump factor too")
    args = parser.parse_args(argv)
    planted = planted_factors(args.truth) if args.truth else {}
    with h5py.File(args.path, "r") as f:
        q_range = ring_q_range(f)
        print(f"{args.path}: {f['trainId'].shape[0]} frames, produced {f['meta'].attrs['start']}")
        print(f"ring: q {q_range[0]:.4g} .. {q_range[1]:.4g} 1/m (unpumped median above half its peak)")
        for title, rows in (("per-frame azimuthal average", per_frame_effect(f, q_range)),
                            ("image cube", cube_effect(f, q_range))):
            print(f"\n{title}: ring photons per uJ\n{'delay (mm)':>10} {'pumped':>12} {'unpumped':>12} "
                  f"{'ratio':>7} {'+-':>6}" + (f" {'planted':>7}" if planted else ""))
            for d, on, off, ratio, err in rows:
                line = f"{d:10.2f} {on:12.5g} {off:12.5g} {ratio:7.3f} {err:6.3f}"
                if planted:
                    line += f" {min(planted.items(), key=lambda kv: abs(kv[0] - d))[1]:7.3f}"
                print(line)


if __name__ == "__main__":
    main()
