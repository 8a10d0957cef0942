"""What the cube and run-sum accumulators cost in isolation, current code against a baseline commit.

Per-frame cost of ``CubeAccumulator.add`` and ``RunSums.add`` on batches of full-DSSC
frames with a realistic mask (:func:`measure_per_frame`), and the time to write a cube
(:func:`measure_write`). The baseline's ``cube.py`` and ``runsums.py`` are read with
``git show`` (read-only) into a package of their own (:func:`baseline_package`).
Used by ``bench_cube.py``.
"""
from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import h5py
import numpy as np

from common import bench_dir, repeat_timings, stats

log = logging.getLogger("bench_cube")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The last commit before the fast accumulation kernels (the "before" of the comparison).
BASELINE_COMMIT = "96b6e791d873ae69eb752987cd42c0785f501747"
BASELINE_PACKAGE = "smd_accumulators_baseline"
FULL_SHAPE = (16, 128, 512)


# ---------------------------------------------------------------------- the baseline code
def baseline_package(commit: str = BASELINE_COMMIT) -> Optional[Path]:
    """A folder holding the package :data:`BASELINE_PACKAGE`: cube.py and runsums.py of ``commit``.

    Read with ``git show`` (read-only); the relative imports of the rest of smalldata point
    to the installed package. Returns None (and logs why) when git or the commit is missing.
    """
    folder = bench_dir() / f"baseline_{commit[:12]}"
    pkg = folder / BASELINE_PACKAGE
    if (pkg / "cube.py").is_file():
        return folder
    sources = {}
    for name in ("cube.py", "runsums.py"):
        proc = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{commit}:smalldata/{name}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            log.warning("no baseline: git show %s:smalldata/%s failed: %s", commit[:12], name, proc.stderr.strip())
            return None
        text = proc.stdout
        for mod in ("errors", "mpi"):
            text = text.replace(f"from .{mod} import", f"from smalldata.{mod} import")
        sources[name] = text
    pkg.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (pkg / name).write_text(text)
    (pkg / "__init__.py").write_text(f'"""cube.py and runsums.py of smalldata at {commit}."""\n')
    return folder


def import_baseline(folder: Optional[Path]):
    """``(cube module, runsums module)`` of the baseline, or None."""
    if folder is None:
        return None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return (importlib.import_module(f"{BASELINE_PACKAGE}.cube"), importlib.import_module(f"{BASELINE_PACKAGE}.runsums"))


# ---------------------------------------------------------------------- per-frame cost in isolation
def synthetic_batch(n_frames: int = 40, frames_per_train: int = 20, seed: int = 0) -> Dict[str, np.ndarray]:
    """Full-DSSC frames in photons with a realistic ``valid`` mask, labels, bins, XGM, keep."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.15, (n_frames,) + FULL_SHAPE).astype(np.float32)
    images += rng.poisson(0.05, images.shape).astype(np.float32)
    static = np.ones(FULL_SHAPE, dtype=bool)
    static[:, [0, 63, 64, 127], :] = False                       # ASIC edge rows
    static[:, :, np.r_[0:512:64, 63:512:64]] = False             # ASIC edge columns
    static &= rng.random(FULL_SHAPE) > 0.003                     # dead, hot, noisy pixels
    saturated = rng.random(images.shape) < 1e-5
    images[saturated] = 34.0
    valid = static[None] & ~saturated
    frame = np.arange(n_frames)
    return {"images": images, "valid": valid, "labels": frame % 2, "bins": frame // frames_per_train % 5,
            "xgm": rng.lognormal(np.log(1000.0), 0.25, n_frames), "keep": np.ones(n_frames, dtype=bool)}


def measure_per_frame(baseline, rounds: int, calls: int) -> Dict[str, object]:
    """Milliseconds per full-DSSC frame of ``CubeAccumulator.add`` and ``RunSums.add``, now and baseline.

    ``cube_and_sums`` is the cube then the sums (as the producer calls them), ``cube_with_sums``
    the cube with ``sums=`` sharing the per-pixel passes (current code only).
    """
    import smalldata.sums.cube as cube_now
    import smalldata.sums.runsums as runsums_now

    b = synthetic_batch()
    n = len(b["images"])
    codes = {"after": (cube_now, runsums_now)}
    if baseline is not None:
        codes["before"] = baseline
    results: Dict[str, Dict[str, List[float]]] = {c: {} for c in codes}

    def cube_add(cube, **kw):
        cube.add(b["images"], b["bins"], b["labels"], xgm=b["xgm"], valid=b["valid"], keep=b["keep"], **kw)

    def sums_add(sums):
        sums.add(b["images"], valid=b["valid"], keep=b["keep"])

    for r in range(rounds):
        for code in (list(codes) if r % 2 == 0 else list(codes)[::-1]):
            cube_mod, sums_mod = codes[code]
            cube = cube_mod.CubeAccumulator(5, ("pumped", "unpumped"), FULL_SHAPE)
            squares = cube_mod.CubeAccumulator(5, ("pumped", "unpumped"), FULL_SHAPE, sum_squares=True)
            sums = sums_mod.RunSums(FULL_SHAPE, threshold=0.5)
            cases = {"cube": lambda: cube_add(cube), "cube_squares": lambda: cube_add(squares),
                     "sums": lambda: sums_add(sums), "cube_and_sums": lambda: (cube_add(cube), sums_add(sums))}
            if code == "after":
                cases["cube_with_sums"] = lambda: cube_add(cube, sums=sums)
            for name, fn in cases.items():
                fn()  # first touch of the accumulators and scratch
                results[code].setdefault(name, []).append(1e3 * min(repeat_timings(fn, calls)) / n)
    out: Dict[str, object] = {}
    for code, per in results.items():
        out[code] = {name: stats(v, higher_is_better=False) for name, v in per.items()}
        out[code]["frames_per_s_best"] = {name: round(1e3 / min(v), 1) for name, v in per.items()}
    if "before" in out:
        out["speed_up_best"] = {name: round(min(results["before"][name]) / min(results["after"][name]), 2)
                                for name in results["before"]}
    return out


def measure_write(baseline, n_bins: int = 5, repeat: int = 2) -> Dict[str, object]:
    """Seconds to write a full-DSSC cube of ``n_bins`` x 2 labels with ``compression="gzip"``, now and baseline."""
    import smalldata.sums.cube as cube_now

    batch = synthetic_batch(n_frames=20)
    codes = {"after": cube_now}
    if baseline is not None:
        codes["before"] = baseline[0]
    out: Dict[str, object] = {}
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        for code, mod in codes.items():
            cube = mod.CubeAccumulator(n_bins, ("pumped", "unpumped"), FULL_SHAPE)
            for b in range(n_bins):
                cube.add(batch["images"], np.full(20, b), batch["labels"], xgm=batch["xgm"], valid=batch["valid"])
            times = []
            for i in range(repeat):
                path = Path(tmp) / f"{code}_{i}.h5"
                t0 = time.perf_counter()
                with h5py.File(path, "w") as f:
                    cube.write(f.create_group("Sums/dssc_cube"), compression="gzip")
                times.append(time.perf_counter() - t0)
            out[code] = {"seconds": stats(times, higher_is_better=False),
                         "file_mb": round(path.stat().st_size / 2**20, 1)}
    out["cube"] = f"{n_bins} bins x 2 labels x {FULL_SHAPE}, 20 frames per (bin, label)"
    return out
