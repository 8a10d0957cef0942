"""Analyse a small-data file with plain h5py and numpy: the pump-probe effect against the delay.

Two ways, which should agree: from the per-frame azimuthal averages (selecting frames by their
pattern label and rejection flags), and from the binned image cube written in the same pass.

Usage: python examples/analyse_output.py [demo_data/smalldata/r0614.h5]
"""
import sys

import h5py
import numpy as np


def per_frame_effect(f):
    """Pumped / unpumped ring intensity per delay from the per-frame outputs."""
    labels = list(f["UserDataCfg/frames/pattern"].attrs["labels"])
    label = np.array(labels)[f["pattern/label_id"][:]]
    kept = f["rejection/reasons"][:] == 0
    delay = f["scan/delay"][:]
    xgm = f["xgm/sa3_intensity"][:]
    azav = f["dssc/azav_mean"][:, 0, :]            # (frames, q) photons per pixel
    ring = np.nansum(azav, axis=1)
    rows = []
    for d in np.unique(delay[np.isfinite(delay)]):
        sel = kept & (delay == d)
        on, off = sel & (label == "pumped"), sel & (label == "unpumped")
        rows.append((d, ring[on].sum() / xgm[on].sum(), ring[off].sum() / xgm[off].sum()))
    return rows


def cube_effect(f):
    """The same from the cube: XGM-normalised mean images summed over the detector."""
    cube = f["Sums/dssc_cube"]
    labels = list(cube["labels"].asstr()[:])
    sums, xgm = cube["sum"][:], cube["xgm_sum"][:]           # (bins, labels, ...), (bins, labels)
    signal = sums.reshape(sums.shape[:2] + (-1,)).sum(axis=2) / xgm
    on, off = signal[:, labels.index("pumped")], signal[:, labels.index("unpumped")]
    return list(zip(cube["bin_centres"][:], on, off))


def main(path: str) -> None:
    with h5py.File(path, "r") as f:
        print(f"{path}: {f['trainId'].shape[0]} frames, produced {f['meta'].attrs['start']}")
        for title, rows in (("per-frame azimuthal average", per_frame_effect(f)),
                            ("image cube", cube_effect(f))):
            print(f"\n{title}\n{'delay (mm)':>10} {'pumped':>12} {'unpumped':>12} {'ratio':>7}")
            for d, on, off in rows:
                print(f"{d:10.2f} {on:12.5g} {off:12.5g} {on / off:7.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_data/smalldata/r0614.h5")
