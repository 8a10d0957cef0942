"""Where a full frame's time goes on the fused path: the floors behind the full-detector goals.

In one process, on batches held in memory (so the disk and the page cache are out of
it), rounds alternating:

- ``read``: ``RunAccess.read_raw`` of the batches (16 module files into one array);
- ``h5py``: plain h5py reads of the same frames, module by module;
- ``calibrate``: the fused kernel with no consumer: each pixel's ``(raw - pedestal) *
  inverse gain`` and validity, the pass every configuration pays (it streams the raw
  frame and the pedestal of its memory cell: three times the bytes the read moves);
- ``standard``: the kernel with the standard config's consumers (azimuthal over all
  modules, three ROIs with projections).

One rank's rate can reach at most ``h5py / (read + standard)`` of the read-only rate;
``h5py / (h5py + calibrate)`` bounds it for any configuration that calibrates every
pixel once per frame on one core.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Dict, List

import h5py

DSSC_KEY = "INSTRUMENT/SCS_DET_DSSC1M-1/DET/{m}CH0:xtdf/image/data"


def kernel_parts(config_path: Path, run: int, n_trains: int = 8, trains_per_batch: int = 2,
                 repeat: int = 5) -> Dict[str, object]:
    """Milliseconds per full frame of each part (best of ``repeat`` alternating rounds).

    Parameters
    ----------
    config_path : Path
        The standard config (its detector ``dssc`` takes the fused path).
    run : int
        Data run.
    n_trains, trains_per_batch : int
        Trains measured, and trains per batch (the producer's default batch is 32 frames).
    repeat : int
        Rounds.
    """
    from smalldata.config.producer import ProducerConfig
    from smalldata.io.runaccess import RunAccess
    from smalldata.pipeline.detectors import setup_detectors
    from smalldata.simulate import run_path

    config = ProducerConfig.from_file(config_path)
    access = RunAccess.from_directory(run_path(config.settings["data_root"], config.settings["proposal"], run))
    setup = setup_detectors(config, config.settings["proposal"], access)[0]
    plan = setup.plan
    if plan is None:
        raise RuntimeError("the standard config did not take the fused path")
    trains = access.train_ids[:n_trains]
    batches = [trains[i:i + trains_per_batch] for i in range(0, len(trains), trains_per_batch)]
    raws = [access.read_raw(setup.modules, b) for b in batches]
    n_frames = sum(len(r) for r in raws)
    datasets = _module_datasets(access, setup.modules)

    def read():
        for b in batches:
            batch = access.read_raw(setup.modules, b)
            access.release(batch)  # as the event loop does: its array serves the next read

    def plain_h5py():
        for ds in datasets:
            for a in range(0, n_frames, 32):
                ds[a:min(a + 32, n_frames)]

    def calibrate():
        for raw in raws:
            plan.run(raw, functions=False)

    def standard():
        for raw in raws:
            plan.run(raw)

    parts = {"read": read, "h5py": plain_h5py, "calibrate": calibrate, "standard": standard}
    standard()  # compile / load the kernel
    rounds: Dict[str, List[float]] = {k: [] for k in parts}
    for _ in range(repeat):
        for name, fn in parts.items():
            t0 = time.perf_counter()
            fn()
            rounds[name].append((time.perf_counter() - t0) / n_frames * 1e3)
    best = {k: min(v) for k, v in rounds.items()}
    median = {k: statistics.median(v) for k, v in rounds.items()}
    for ds in datasets:
        ds.file.close()
    return {
        "frames": n_frames, "ms_per_frame_rounds": rounds, "ms_per_frame_best": best,
        "ms_per_frame_median": median,
        "bound_1rank_vs_read": median["h5py"] / (median["read"] + median["standard"]),
        "bound_any_config_vs_read": median["h5py"] / (median["h5py"] + median["calibrate"]),
    }


def _module_datasets(access, modules) -> list:
    """Each module's ``image/data`` of the run's first sequence file (it holds the first trains), with h5py."""
    out = []
    for m in modules:
        path = next(Path(f.filename) for f in access.data.files
                    if f"-DSSC{m:02d}-S00000" in Path(f.filename).name)
        out.append(h5py.File(path, "r")[DSSC_KEY.format(m=m)])
    return out


def format_parts(parts: Dict[str, object]) -> str:
    """The parts as lines of text for the report."""
    med = parts["ms_per_frame_median"]
    return (f"per full frame (median, ms): read_raw {med['read']:.2f}, h5py {med['h5py']:.2f}, calibration only "
            f"{med['calibrate']:.2f}, standard kernel {med['standard']:.2f}; bound on 1 rank vs read "
            f"{parts['bound_1rank_vs_read']:.2f}, for any config {parts['bound_any_config_vs_read']:.2f}")
