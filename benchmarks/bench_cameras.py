"""hRIXS camera runs through the whole producer: ``smd_producer`` with the ``hrixs`` centroiding
function on full 2048 x 2048 frames, against baselines measured in the same run.

On a simulated hRIXS camera run (``--trains`` trains, one 2048 x 2048 uint16 image each, about 8 MiB;
``--photons`` single photons per frame, a tenth of them double, Gaussian charge clouds of 0.4 px,
150 ADU per photon, read noise 2 ADU on a pedestal of about 100 ADU) and its dark run:

1. the dark made by ``smd_dark`` from a ``type: camera`` entry (timed, once; then reused);
2. baseline (a): reading the same images with extra-data (``select_trains`` + ``ndarray`` in
   blocks of the producer's batch), warm page cache, frames per second;
3. baseline (b): per-frame ``scipy.ndimage.label`` of the pixels above a threshold + ``center_of_mass``
   of each label (as ``bench_centroid.py``) on ``--baseline-frames`` dark-subtracted frames of the run,
   and, on the same frames in the same process, the compiled ``centroid`` alone (no read, no calibration);
4. the producer: ``smd_producer`` (1 rank, then 2 ranks under ``mpiexec``) with the camera entry and one
   ``hrixs`` function (centroiding, curvature, energy bins): the loop rate (final progress line, from the
   end of the set-up), end to end (``/meta`` ``elapsed_s``), the whole command, and each rank's peak
   memory (``VmHWM``); frames per second per rank, its ratio to the read and to the ndimage baseline;
   the photons found against the planted ones.

Rounds alternate the read baseline and the producer so that both see the same machine load; the best
of ``--repeat`` rates is kept, all are in the JSON. Goal: >= 50 frames/s per rank and >= 5x the ndimage
baseline. Writes ``benchmarks/results/cameras.json``; data are cached in ``$SMALLDATA_BENCH_DIR``.

    python benchmarks/bench_cameras.py [--trains 80] [--dark-trains 20] [--photons 2000] [--repeat 2]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import h5py
import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_centroid import baseline as ndimage_centroid  # noqa: E402
from bench_producer import producer_run  # noqa: E402
from common import (  # noqa: E402
    PROPOSAL,
    RESULTS_DIR,
    bench_dir,
    cache_key,
    cpu_pressure,
    format_table,
    machine_info,
    run_command,
    repeat_timings,
    run_files,
    stats,
    tool,
    warm_files,
    write_config,
    write_results,
)

log = logging.getLogger("bench_cameras")
DATA_RUN, DARK_RUN = 760, 761
CAMERA = "hrixs"
ADU, NOISE, CLOUD, DOUBLE_FRACTION = 150.0, 2.0, 0.4, 0.1
THRESHOLD, DOUBLE_THRESHOLD = 0.5 * ADU, 1.5 * ADU  # 2x2 and 4x4 sums (ADU), as bench_centroid
#: The hrixs function of the benchmark: energies over the whole chip (0.01 eV per row from 920 eV)
HRIXS_FUNCTION = {"type": "hrixs", "name": "hrixs", "method": "centroid", "curvature": [0.002, 2e-6],
                  "energy_slope": 0.01, "energy_intercept": 920.0, "energy_bins": [920.0, 945.0, 0.05],
                  "threshold_adu": THRESHOLD, "double_threshold_adu": DOUBLE_THRESHOLD}
GOAL_FPS_PER_RANK, GOAL_SPEEDUP = 50.0, 5.0


# ---------------------------------------------------------------------- data
def write_run(root: Path, run: int, shape: Tuple[int, int], n_trains: int, photons: int, dark: bool) -> int:
    """Write one hRIXS run train by train (memory of one frame); returns the photons planted."""
    from smalldata.simulate import run_path
    from smalldata.simulate.cameras import CameraSim, CameraTrainWriter, deposit, noisy_image

    sim = CameraSim(camera=CAMERA, shape=shape, n_trains=n_trains, sequence_trains=40, seed=5)
    preset, pedestal = sim.preset, sim.pedestal()
    rng = np.random.default_rng(sim.seed + 1000 * run)
    run_dir = run_path(root, PROPOSAL, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = CameraTrainWriter(run_dir, PROPOSAL, run, preset, {}, sim.sequence_trains)
    planted = 0
    try:
        for t in range(n_trains):
            signal = np.zeros(preset.shape)
            if not dark:
                y = rng.uniform(3, preset.shape[0] - 4, photons)
                x = rng.uniform(3, preset.shape[1] - 4, photons)
                n = 1 + (rng.random(photons) < DOUBLE_FRACTION)
                deposit(signal, y, x, n * ADU, CLOUD)
                planted += int(n.sum())
            image = noisy_image(signal, pedestal, sim.noise_adu, rng, preset.saturation)
            writer.write_train(sim.first_train_id + t, 1_700_000_000_000_000_000 + 100_000_000 * t, image)
    finally:
        writer.close()
    return planted


def prepare(shape: Tuple[int, int], trains: int, dark_trains: int, photons: int) -> Tuple[Path, int]:
    """The data and dark runs under the bench folder (written once); returns the root and the photons planted."""
    root = bench_dir() / f"cameras_{cache_key(f'{shape} {trains} {dark_trains} {photons} v1')}"
    done = root / "complete.txt"
    if done.is_file():
        log.info("reusing the hRIXS runs under %s", root)
        return root, int(done.read_text())
    t0 = time.perf_counter()
    write_run(root, DARK_RUN, shape, dark_trains, 0, dark=True)
    planted = write_run(root, DATA_RUN, shape, trains, photons, dark=False)
    done.write_text(str(planted))
    log.info("simulated the hRIXS dark (%d trains) and data run (%d trains) under %s in %.0f s", dark_trains, trains,
             root, time.perf_counter() - t0)
    return root, planted


def camera_config(root: Path, work: Path, shape: Tuple[int, int]) -> Dict:
    """The producer config: one camera entry with the hrixs function."""
    return {"proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(work / "calib"),
            "output_dir": str(work / "out"),
            "detectors": {CAMERA: {"type": "camera", "camera": CAMERA, "shape": list(shape), "dark_run": DARK_RUN,
                                   "functions": [HRIXS_FUNCTION]}}}


def make_dark(config: Path, calib: Path) -> Dict[str, float]:
    """``smd_dark`` of the camera entry (once; then reused): its wall time and peak memory."""
    from smalldata.calib.darkfile import dark_file_path

    path = dark_file_path(calib, PROPOSAL, DARK_RUN, CAMERA)
    if path.is_file():
        log.info("reusing the camera dark %s", path)
        return {"path": str(path), "reused": True}
    result = run_command([tool("smd_dark"), "-r", str(DARK_RUN), "-c", str(config)]).check("smd_dark")
    log.info("smd_dark of the camera: %.1f s, %s", result.wall_s, result.stdout.strip().splitlines()[-1:])
    return {"path": str(path), "reused": False, "wall_s": result.wall_s, "max_rss_mb": result.max_rss_mb}


# ---------------------------------------------------------------------- baselines
def camera_key(root: Path):
    """The images of the data run as an extra-data KeyData."""
    from extra_data import RunDirectory

    from smalldata.cameras import get_preset
    from smalldata.simulate import run_path

    preset = get_preset(CAMERA)
    return RunDirectory(str(run_path(root, PROPOSAL, DATA_RUN)))[preset.source, preset.key]


def read_images(root: Path, block: int) -> float:
    """Seconds to read every image of the data run with extra-data, ``block`` trains at a time."""
    from extra_data import by_index

    key = camera_key(root)
    n = len(key.train_ids)
    t0 = time.perf_counter()
    checksum = 0
    for start in range(0, n, block):
        checksum += int(key.select_trains(by_index[start:start + block]).ndarray()[:, 0, 0].sum())
    return time.perf_counter() - t0


def centroid_baselines(root: Path, dark_path: Path, n_frames: int, repeat: int) -> Dict[str, object]:
    """Seconds per frame of the ndimage baseline and of the compiled centroiding alone, same frames."""
    from extra_data import by_index

    from smalldata.cameras import CameraDark
    from smalldata.spectro.centroid import centroid

    dark = CameraDark.load(dark_path)
    raw = camera_key(root).select_trains(by_index[:n_frames]).ndarray()
    frames = np.where(dark.mask, raw.astype(np.float32) - dark.mean, 0).astype(np.float32)
    centroid(frames[:1], THRESHOLD)  # compilation or cache load
    t_ours, t_base = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        hits = centroid(frames, THRESHOLD, double_threshold=DOUBLE_THRESHOLD)
        t_ours.append((time.perf_counter() - t0) / n_frames)
        t0 = time.perf_counter()
        labels = ndimage_centroid(frames)
        t_base.append((time.perf_counter() - t0) / n_frames)
    return {"frames": n_frames, "ndimage_s_per_frame": min(t_base), "centroid_s_per_frame": min(t_ours),
            "ndimage_labels_per_frame": labels / n_frames, "centroid_hits_per_frame": len(hits.y) / n_frames}


def stage_costs(root: Path, dark_path: Path, shape: Tuple[int, int], batch: int, repeat: int) -> Dict[str, float]:
    """Milliseconds per frame of the producer's stages on a camera batch, in process, best of ``repeat``.

    The stages of a camera batch in the event loop: the extra-data read of ``batch`` images, the
    calibration (``DetObject.calibrate``: raw minus the dark mean, the valid mask), and the hrixs
    function's ``process`` (the valid copy, centroiding, curvature and energy binning).
    """
    from extra_data import by_index

    from smalldata.calib.detobject import DetObject
    from smalldata.cameras import CameraDark, get_preset
    from smalldata.detectors.camera import camera_type
    from smalldata.funcs.hrixs import HRIXSSpectrum
    from smalldata.plugin.frames import RawBatch

    det = DetObject.from_camera_dark(CAMERA, CameraDark.load(dark_path), camera_type(get_preset(CAMERA).with_shape(shape)))
    func = HRIXSSpectrum(**{k: v for k, v in HRIXS_FUNCTION.items() if k != "type"})
    func.setup(det)
    key = camera_key(root)

    def read():
        images = key.select_trains(by_index[:batch]).ndarray()
        n = len(images)
        return RawBatch(train_ids=np.asarray(key.train_ids[:n], np.uint64), pulse_ids=np.zeros(n, np.uint64),
                        cell_ids=np.zeros(n, np.uint16), frame_index=np.zeros(n, np.int64), modules=(0,),
                        data=images[:, None], present=np.ones((n, 1), bool))

    raw = read()
    frames = det.calibrate(raw)
    func.process(frames)  # compilation or cache load
    n = len(raw.train_ids)
    costs = {}
    for name, step in (("read", read), ("calibrate", lambda: det.calibrate(raw)),
                       ("hrixs_process", lambda: func.process(frames))):
        costs[f"{name}_ms_per_frame"] = min(repeat_timings(step, repeat)) / n * 1e3
    return costs


def code_commit() -> str:
    """The git commit of the smalldata code measured (its checkout), or "unknown"."""
    import subprocess

    import smalldata

    found = subprocess.run(["git", "-C", str(Path(smalldata.__file__).resolve().parent), "rev-parse", "HEAD"],
                           capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown"


# ---------------------------------------------------------------------- the producer
def producer(config: Path, out: Path, n_ranks: int) -> Dict[str, object]:
    """One ``smd_producer`` run: ``producer_run``'s figures and the photons found."""
    result = producer_run(config, DATA_RUN, out, None, n_ranks)
    with h5py.File(out, "r") as f:
        result["photons_found"] = int(f[f"{CAMERA}/hrixs_n_photons"][()].sum())
        result["camera_rows"] = int(f[f"{CAMERA}/trainId"].shape[0])
    out.unlink()
    return result


def summarise(runs: List[Dict[str, object]], n_ranks: int, read_fps: float, ndimage_fps: float) -> Dict[str, object]:
    """Rates per rank and their ratios to the baselines; the best loop rate of the repeats."""
    loop = stats([r["loop_fps"] for r in runs])
    per_rank = loop["best"] / n_ranks
    return {"ranks": n_ranks, "runs": runs, "loop_fps": loop,
            "end_to_end_fps": stats([r["end_to_end_fps"] for r in runs]),
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "fps_per_rank": per_rank, "ratio_to_read": per_rank / read_fps, "ratio_to_ndimage": per_rank / ndimage_fps,
            "peak_rss_mb_per_rank": max(max((r["rss_per_rank_mb"] or {0: r["max_rss_mb"]}).values()) for r in runs),
            "photons_found": runs[-1]["photons_found"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trains", type=int, default=80, help="trains (frames) of the data run (default 80)")
    parser.add_argument("--dark-trains", type=int, default=20, help="trains of the dark run (default 20)")
    parser.add_argument("--shape", default="2048,2048", help="image rows,columns (default 2048,2048; small for a "
                        "quick check)")
    parser.add_argument("--photons", type=int, default=2000, help="photon hits per frame (default 2000)")
    parser.add_argument("--ranks", default="1,2", help="rank counts of smd_producer (default 1,2)")
    parser.add_argument("--baseline-frames", type=int, default=6, help="frames of the ndimage baseline (default 6)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of read + producer, best kept (default 2)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "cameras.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    shape = tuple(int(v) for v in args.shape.split(","))
    root, planted = prepare(shape, args.trains, args.dark_trains, args.photons)
    work = root / "work"
    config = write_config(work / "hrixs.yaml", camera_config(root, work, shape))
    (work / "out").mkdir(parents=True, exist_ok=True)
    dark = make_dark(config, work / "calib")
    log.info("warmed %.0f MB of files", warm_files(run_files(root, DATA_RUN)) / 2**20)
    batch = max(1, int(64 * 2**20 // (shape[0] * shape[1] * 2)))  # the producer's default batch (64 MB of raw images)

    centroid_cost = centroid_baselines(root, Path(dark["path"]), args.baseline_frames, max(args.repeat, 2))
    ndimage_fps = 1.0 / centroid_cost["ndimage_s_per_frame"]
    stages = stage_costs(root, Path(dark["path"]), shape, batch, max(args.repeat, 3))
    ranks = [int(v) for v in args.ranks.split(",")]
    reads, runs = [], {n: [] for n in ranks}
    for _ in range(args.repeat):
        reads.append(args.trains / read_images(root, batch))
        for n in ranks:
            runs[n].append(producer(config, work / "out" / f"r{DATA_RUN}_n{n}.h5", n))
    read = stats(reads)
    results = {n: summarise(r, n, read["best"], ndimage_fps) for n, r in runs.items()}
    machine.update(scipy=scipy.__version__, smalldata_commit=code_commit(), load_average_at_end=[round(v, 2) for v in os.getloadavg()],
                   cpu_pressure_avg60_pct=cpu_pressure())
    report = {
        "benchmark": "cameras",
        "what": f"smd_producer with one hrixs centroiding function on a simulated {shape[0]}x{shape[1]} hRIXS camera "
                "run, 1 and 2 ranks, vs an extra-data read of the same images and per-frame scipy.ndimage "
                "label + center_of_mass; loop rates (from the end of the set-up), best of --repeat",
        "goal": f">= {GOAL_FPS_PER_RANK:g} frames/s per rank and >= {GOAL_SPEEDUP:g}x the ndimage baseline",
        "shape": list(shape), "trains": args.trains, "dark_trains": args.dark_trains, "photons_per_frame": args.photons,
        "photons_planted": planted, "batch_trains": batch, "smd_dark": dark, "read_fps": read,
        "centroid_alone": {**centroid_cost, "ndimage_fps": ndimage_fps,
                           "centroid_fps": 1.0 / centroid_cost["centroid_s_per_frame"]},
        "stages_ms_per_frame": stages, "producer": {str(n): r for n, r in results.items()}, "machine": machine,
    }
    report["goal_met"] = all(r["fps_per_rank"] >= GOAL_FPS_PER_RANK and r["ratio_to_ndimage"] >= GOAL_SPEEDUP
                             for r in results.values())
    write_results(report, args.output)
    rows = [[n, f"{r['loop_fps']['best']:.1f}", f"{r['fps_per_rank']:.1f}", f"{r['end_to_end_fps']['best']:.1f}",
             f"{r['wall_s']:.1f}", f"{r['ratio_to_read']:.2f}", f"{r['ratio_to_ndimage']:.1f}",
             f"{r['peak_rss_mb_per_rank']:.0f}", f"{r['photons_found'] / planted:.3f}"] for n, r in results.items()]
    print(format_table(rows, ["ranks", "loop fps", "fps/rank", "end-to-end fps", "wall s", "x read", "x ndimage",
                              "peak MiB/rank", "found/planted"]))
    print(f"read (extra-data, {batch} trains a block): {read['best']:.1f} frames/s; ndimage: {ndimage_fps:.1f} "
          f"frames/s; centroid alone: {report['centroid_alone']['centroid_fps']:.1f} frames/s; load average "
          f"{machine['load_average_at_start']} -> {machine['load_average_at_end']}")
    print("in process, ms per frame: " + ", ".join(f"{k[:-len('_ms_per_frame')]} {v:.1f}" for k, v in stages.items()))
    return 0 if report["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
