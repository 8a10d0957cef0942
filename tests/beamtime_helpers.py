"""Shared set-up of the beamtime tests: a range of tiny simulated runs, their config, the test SLURM."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smalldata.simulate import SimulationConfig, run_path, simulate_dark_run, simulate_data_run

PROPOSAL, DARK_RUN = 2937, 615
RUNS = (610, 611, 612)
#: the run of RUNS whose module 3 lacks its second sequence file
MISSING_MODULE_RUN = 611
SERVICES = Path(__file__).parent / "services" / "slurm.sh"


def tiny_config(seed: int) -> SimulationConfig:
    """Two modules, 6 trains of 4 frames in two sequence files, a dark of 20 trains."""
    return SimulationConfig.small(n_trains=6, sequence_trains=3, dark_trains=20, seed=seed,
                                  pattern=("pumped", "unpumped"))


def simulate_range(root: Path, runs=RUNS, dark: bool = True) -> Path:
    """Simulate ``runs`` (and the dark) under ``root``; the module 3 file of sequence 1 of
    :data:`MISSING_MODULE_RUN` is removed (a module file the DAQ did not write)."""
    for run in runs:
        simulate_data_run(root, PROPOSAL, run, tiny_config(run), threads=1)
    if dark:
        simulate_dark_run(root, PROPOSAL, DARK_RUN, tiny_config(1), threads=1)
    if MISSING_MODULE_RUN in runs:
        (run_path(root, PROPOSAL, MISSING_MODULE_RUN) / f"RAW-R{MISSING_MODULE_RUN:04d}-DSSC03-S00001.h5").unlink()
    return root


def write_config(path: Path, root: Path, output_dir: Path, calib_dir: Path, xgm_min: float = 700.0) -> Path:
    """A producer config of the tiny runs: two ROIs, XGM and delay, frame labels, an XGM cut."""
    cfg = {
        "proposal": PROPOSAL, "data_root": str(root), "calib_dir": str(calib_dir), "output_dir": str(output_dir),
        "batch_size": 8,
        "point_data": {
            "xgm": {"sa3_intensity": {"source": "SCS_BLU_XGM/XGM/DOOCS:output", "key": "data.intensitySa3TD",
                                      "per": "pulse", "units": "uJ", "filler": 1.0}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}}},
        "pulses": {"laser_pulse_offset": 0},
        "pattern": {"labels": ["pumped", "unpumped"]},
        "rejection": {"xgm": "xgm/sa3_intensity", "xgm_min": xgm_min},
        "detectors": {"dssc": {
            "dark_run": DARK_RUN, "gain": 15.0, "mask_asic_edges": False, "dark": {"min_frames": 10},
            "functions": [{"type": "roi", "name": "speckle", "module": 3, "roi": [64, 128, 384, 512]},
                          {"type": "roi", "name": "full", "module": 2, "roi": [0, 128, 0, 512]}]}},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def console(name: str) -> str:
    """A console script of this environment."""
    return str(Path(sys.executable).parent / name)


def run_cli(args, env=None, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run a console script of this environment; its result with text output."""
    return subprocess.run([console(args[0]), *map(str, args[1:])], capture_output=True, text=True,
                          env=env, timeout=timeout)


def start_slurm(folder: Path) -> str:
    """SLURM_CONF of the cluster the test run uses: the one ``make test`` started (``$SLURM_CONF``),
    else one started here in ``folder`` (stopped by :func:`stop_slurm`); skips the test, with the
    services script's one line, only when the machine cannot run SLURM."""
    given = os.environ.get("SLURM_CONF")
    if given and Path(given).is_file():
        return given
    started = Path(os.environ.get("SMD_SLURM_DIR", "")) / "unavailable"
    if os.environ.get("SMD_SLURM_DIR") and started.is_file():  # make test tried already
        pytest.skip(f"no SLURM: {started.read_text().strip()}")
    result = subprocess.run(["bash", str(SERVICES), "start", str(folder)], capture_output=True, text=True,
                            timeout=900)
    reason = folder / "unavailable"
    if reason.is_file():
        pytest.skip(f"no SLURM: {reason.read_text().strip()}")
    if result.returncode != 0:
        raise RuntimeError(f"tests/services/slurm.sh start failed: {result.stderr.strip()}")
    return str(folder / "slurm.conf")


def stop_slurm(folder: Path) -> None:
    """Stop a cluster :func:`start_slurm` started in ``folder`` (none if it was given by $SLURM_CONF)."""
    if (folder / "slurm.conf").is_file():
        subprocess.run(["bash", str(SERVICES), "stop", str(folder)], capture_output=True, timeout=120)


def characterise_tiny_dark(root: Path, calib_dir: Path) -> Path:
    """The dark constants file of the tiny dark run under ``root``, written to ``calib_dir``."""
    from smalldata.calib.badpixels import DarkThresholds
    from smalldata.calib.dark import characterise_dark, dark_file_path, write_dark_file

    dark = characterise_dark(run_path(root, PROPOSAL, DARK_RUN), thresholds=DarkThresholds(min_frames=10),
                             proposal=PROPOSAL, run_number=DARK_RUN, progress=False)
    return write_dark_file(dark, dark_file_path(calib_dir, PROPOSAL, DARK_RUN, "dssc"))


def produce_range(tmp: Path, xgm_min: float = 700.0) -> dict:
    """Simulate :data:`RUNS` and their dark under ``tmp`` and produce their outputs in this process."""
    from smalldata.config.producer import ProducerConfig
    from smalldata.pipeline.eventloop import run_producer

    root = simulate_range(tmp / "data")
    characterise_tiny_dark(root, tmp / "calib")
    path = write_config(tmp / "producer.yaml", root, tmp / "out", tmp / "calib", xgm_min=xgm_min)
    config = ProducerConfig.from_file(path)
    for run in RUNS:
        run_producer(config, run)
    return {"tmp": tmp, "root": root, "config": config, "config_path": path, "out": tmp / "out"}


#: XGM cut of the shared range of runs (uJ): rejects a few frames of each tiny run
SHARED_XGM_MIN = 900.0
_SHARED: dict = {}


def shared_range(tmp_path_factory) -> dict:
    """:func:`produce_range` made once per test session (xgm_min :data:`SHARED_XGM_MIN`); do not modify."""
    if "range" not in _SHARED:
        _SHARED["range"] = produce_range(tmp_path_factory.mktemp("shared_range"), xgm_min=SHARED_XGM_MIN)
    return _SHARED["range"]
