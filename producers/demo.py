"""The demo behind ``make demo``: simulate, characterise the dark, produce, summarise.

Run as ``python -m smalldata.cli.demo [--config configs/producer.yaml] [--ranks 2]``. The
simulated runs (dark 615, data 614 of proposal 2937) are written under the config's
``data_root`` only if they are not there yet.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

log = logging.getLogger("smalldata.cli.demo")

PROPOSAL, DATA_RUN, DARK_RUN = 2937, 614, 615


def _tool(name: str) -> str:
    """A console script or mpiexec from this environment's bin folder (else PATH)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"demo: {name} not found; install the project with 'make install'")
    return found


def _run(cmd: List[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SystemExit(f"demo: command failed with status {result.returncode}: {' '.join(cmd)}")


def summarise(path: Path, elapsed: float) -> str:
    """A short description of an output file."""
    import h5py

    with h5py.File(path, "r") as f:
        rows = f["trainId"].shape[0]
        names: List[str] = []
        sums: List[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset)
                     and not name.startswith(("UserDataCfg", "meta", "Sums")) else None)
        if "Sums" in f:
            f["Sums"].visititems(lambda name, obj: sums.append(f"Sums/{name}") if isinstance(obj, h5py.Dataset)
                                 else None)
        skipped = f["meta/skipped_trainId"].shape[0]
        ranks = f["meta"].attrs["n_ranks"]
        lines = [f"output {path} ({path.stat().st_size / 2**20:.1f} MiB)",
                 f"  {rows} rows (frames) from {len(set(f['trainId'][:]))} trains, {skipped} trains skipped, "
                 f"{ranks} ranks",
                 f"  {len(names)} per-event datasets, e.g.:"]
        for name in sorted(names, key=lambda n: (n.count("/") != 0, n))[:16]:
            lines.append(_describe(f[name]))
        if len(names) > 16:
            lines.append(f"    ... and {len(names) - 16} more")
        if sums:
            lines.append(f"  {len(sums)} run sums and cube datasets, e.g.:")
            lines.extend(_describe(f[name]) for name in sorted(sums)[:6])
        lines.append(f"  producer time {elapsed:.1f} s, {rows / elapsed:.0f} frames/s")
    return "\n".join(lines)


def _describe(ds) -> str:
    unit = ds.attrs.get("units", "")
    return f"    /{ds.name.lstrip('/'):<40} {str(ds.shape):<20} {str(ds.dtype):<8} {unit}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the demo: simulate (once), characterise the dark (once), produce, summarise; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m smalldata.cli.demo", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("configs/producer.yaml"))
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks for smd_dark and smd_producer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from smalldata.config.producer import ProducerConfig
    from smalldata.simulate import SimulationConfig, run_path, simulate_dark_run, simulate_data_run

    config = ProducerConfig.from_file(args.config)
    root = Path(config.settings["data_root"])
    sim = SimulationConfig.demo()
    if not run_path(root, PROPOSAL, DARK_RUN).is_dir():
        log.info("simulating dark run %d under %s", DARK_RUN, root)
        simulate_dark_run(root, PROPOSAL, DARK_RUN, sim)
    if not run_path(root, PROPOSAL, DATA_RUN).is_dir():
        log.info("simulating data run %d under %s", DATA_RUN, root)
        simulate_data_run(root, PROPOSAL, DATA_RUN, sim)

    mpiexec = [_tool("mpiexec"), "-n", str(args.ranks)]
    from smalldata.calib.dark import dark_file_path

    if not dark_file_path(config.settings["calib_dir"], PROPOSAL, DARK_RUN, "dssc").is_file():
        _run(mpiexec + [_tool("smd_dark"), "-p", str(PROPOSAL), "-r", str(DARK_RUN), "-c", str(args.config)])
    start = time.monotonic()
    _run(mpiexec + [_tool("smd_producer"), "-r", str(DATA_RUN), "-c", str(args.config), "--overwrite"])
    elapsed = time.monotonic() - start
    output = Path(config.settings["output_dir"]) / f"r{DATA_RUN:04d}.h5"
    print(summarise(output, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
