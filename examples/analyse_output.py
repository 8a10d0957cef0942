"""Analyse a small-data file with plain h5py and numpy: pumped minus unpumped ROI signal vs delay.

Usage: python examples/analyse_output.py demo_data/smalldata/r0614.h5
"""
import sys

import h5py
import numpy as np


def main(path: str) -> None:
    with h5py.File(path, "r") as f:
        delay = f["scan/delay"][:]
        xgm = f["xgm/sa3_intensity"][:]
        signal = f["dssc/ring_sum"][:]
        pulse = f["pulseId"][:]
        print("datasets:", ", ".join(sorted(k for k in f["dssc"])))
    pumped = (pulse // 24) % 2 == 0  # demo pattern: pumped, unpumped, ... every 24 slots
    ok = np.isfinite(xgm) & (xgm > 0)
    print(f"{'delay':>8} {'pumped':>10} {'unpumped':>10} {'ratio':>7}")
    for d in np.unique(delay):
        sel = ok & (delay == d)
        on = signal[sel & pumped].sum() / xgm[sel & pumped].sum()
        off = signal[sel & ~pumped].sum() / xgm[sel & ~pumped].sum()
        print(f"{d:8.2f} {on:10.4f} {off:10.4f} {on / off:7.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_data/smalldata/r0614.h5")
