"""BOZ from end to end on simulated runs: corrections, small data, XAS.

Runs, in a folder (default ``boz_data`` next to the repository's configs, as ``configs/boz.yaml``
expects):

1. ``smd_simulate --preset boz-empty``: dark run 615 and run 614 on three empty membranes (module 15);
   ``smd_simulate --preset boz-sample``: run 616 with an absorption edge on ``n`` (mono scan) and a
   pump effect (delay scan);
2. ``smd_dark -r 615``;
3. ``mpirun -n N smd_boz -d 615 -r 614 -g 3`` (ROIs, flat field, non-linearity -> calib_dir);
4. ``mpirun -n N smd_producer -r 616`` with the ``boz`` function;
5. the XAS: absorbance versus photon energy (edge fit against the planted edge) and the pumped minus
   unpumped difference versus delay, printed and plotted to ``xas.png``.

Usage: ``python examples/boz_demo.py [--ranks 2] [--data DIR] [--trains 40]``
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("boz_demo")


def run(cmd) -> None:
    """Run a command line, stop on failure."""
    log.info("$ %s", " ".join(map(str, cmd)))
    subprocess.run([str(c) for c in cmd], check=True)


def main(argv=None) -> int:
    """Run the demo; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks for smd_boz and smd_producer")
    parser.add_argument("--data", type=Path, default=REPO / "boz_data", help="data folder (rewritten)")
    parser.add_argument("--trains", type=int, default=40, help="trains per run (40 frames each)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = args.data.resolve()
    if data.exists():
        shutil.rmtree(data)
    bindir = Path(sys.executable).parent
    tool = {name: bindir / name if (bindir / name).exists() else name
            for name in ("smd_simulate", "smd_dark", "smd_boz", "smd_producer", "mpiexec")}
    config = Path(tempfile.mkdtemp()) / "boz.yaml"
    config.write_text((REPO / "configs" / "boz.yaml").read_text().replace("../boz_data", str(data)))
    mpi = [tool["mpiexec"], "-n", args.ranks] if args.ranks > 1 else []

    common = ["--root", data, "-p", 2937, "--trains", args.trains, "--frames-per-train", 40, "--quiet"]
    run([tool["smd_simulate"], "-r", 614, "--dark-run", 615, "--preset", "boz-empty", "--dark-trains", 20] + common)
    run([tool["smd_simulate"], "-r", 616, "--preset", "boz-sample"] + common)
    run([tool["smd_dark"], "-r", 615, "-c", config, "--quiet"])
    run(mpi + [tool["smd_boz"], "-d", 615, "-r", 614, "-g", 3, "-c", config])
    run(mpi + [tool["smd_producer"], "-r", 616, "-c", config])

    from smalldata.ana.session import SmallDataAna
    from smalldata.boz.xas import fit_edge
    from smalldata.simulate import read_truth

    truth = read_truth(data, 2937, 616)
    ana = SmallDataAna(data / "smalldata" / "r0616.h5")
    spectrum = ana.xas(scan="scan/photon_energy")
    un = spectrum["unpumped"]["direct"]
    edge = fit_edge(spectrum["unpumped"]["x"], un["mean"], un["stderr"])
    print(f"edge at {edge['energy']:.3f} +- {edge['energy_err']:.3f} eV (planted {truth['boz_edge_energy']}), "
          f"step {edge['step']:.4f} +- {edge['step_err']:.4f} (planted {truth['boz_edge_step']})")
    delay = ana.xas(scan="scan/delay")
    diff = delay["difference"]["direct"]
    for x, m, e in zip(delay["difference"]["x"], diff["mean"], diff["stderr"]):
        print(f"delay {x:5.2f} mm: pumped - unpumped absorbance {m:+.4f} +- {e:.4f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ana.plotXAS(spectrum)
        plt.savefig(data / "xas.png", dpi=80)
        print(f"figures: {data / 'xas.png'} and the smd_boz PNGs in {data / 'calib'}")
    except ImportError:
        pass
    return 0 if np.isfinite(edge["energy"]) else 1


if __name__ == "__main__":
    sys.exit(main())
