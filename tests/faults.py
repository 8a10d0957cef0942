"""Planted faults: copies of the session's simulated data run with one thing broken, and their oracle.

Each ``plant_*`` function damages a copy made by :func:`damaged_copy` the way the real
fault looks in European XFEL files; ``extra-data-validate`` (the file-format oracle) is
run on the copy to show the damage is real.
"""
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import yaml
from helpers import DARK_RUN, DATA_RUN, PROPOSAL, tool

from smalldata.simulate import run_path

XGM = "SCS_BLU_XGM/XGM/DOOCS:output"
DIGITIZER = "SCS_UTC1_ADQ/ADC/1:network"
BUNCH_PATTERN = "SCS_RR_UTC/TSYS/TIMESERVER:outputBunchPattern"


def dssc(module: int) -> str:
    return f"SCS_DET_DSSC1M-1/DET/{module}CH0:xtdf"


def damaged_copy(sim_root: Path, root: Path, run: int = DATA_RUN) -> Path:
    """A copy of run ``run`` under the data root ``root``; returns the copy's run directory."""
    src = run_path(sim_root, PROPOSAL, run)
    dst = run_path(root, PROPOSAL, run)
    shutil.copytree(src, dst)
    return dst


def data_file(run_dir: Path, aggregator: str, seq: int = 0) -> Path:
    """``RAW-R<run>-<aggregator>-S<seq>.h5`` in ``run_dir``."""
    return next(run_dir.glob(f"RAW-R*-{aggregator}-S{seq:05d}.h5"))


def plant_zero_train_id(run_dir: Path, module: int, position: int, seq: int = 0) -> int:
    """INDEX/trainId of one module's file set to 0 at ``position``; returns the train it had."""
    with h5py.File(data_file(run_dir, f"DSSC{module:02d}", seq), "r+") as f:
        tid = int(f["INDEX/trainId"][position])
        f["INDEX/trainId"][position] = 0
    return tid


def plant_index_gap(run_dir: Path, aggregator: str, source: str, group: str, position: int, seq: int = 0) -> list:
    """The INDEX of ``source`` loses train ``position`` (count 0) while the data rows stay where they were.

    The following trains' ``first`` move up by the lost train's count, so every later
    row is given to the train after the one it belongs to (the file's last train gets its
    own rows too). Returns the trains without their own rows (the lost one first).
    """
    with h5py.File(data_file(run_dir, aggregator, seq), "r+") as f:
        ix = f[f"INDEX/{source}/{group}"]
        first, count = ix["first"][()], ix["count"][()]
        lost = int(count[position])
        count[position] = 0
        first[position + 1:] -= lost
        count[-1] += lost
        ix["first"][...] = first
        ix["count"][...] = count
        return [int(t) for t in f["INDEX/trainId"][position:-1]]


def plant_swapped_index(run_dir: Path, module: int, a: int, b: int, seq: int = 0) -> tuple:
    """INDEX/trainId entries ``a`` and ``b`` of a module file swapped (non-monotonic), data rows not moved."""
    with h5py.File(data_file(run_dir, f"DSSC{module:02d}", seq), "r+") as f:
        tids = f["INDEX/trainId"][()]
        tids[[a, b]] = tids[[b, a]]
        f["INDEX/trainId"][...] = tids
        return int(tids[a]), int(tids[b])


def plant_shifted_cells(run_dir: Path, module: int, shift: int, n_cells: int) -> None:
    """Every frame of ``module`` records memory cell ``(cell + shift) % n_cells`` (its data unchanged)."""
    for path in run_dir.glob(f"RAW-R*-DSSC{module:02d}-S*.h5"):
        with h5py.File(path, "r+") as f:
            ds = f[f"INSTRUMENT/{dssc(module)}/image/cellId"]
            ds[...] = (ds[()].astype(np.int64) + shift) % n_cells


def validate(run_dir: Path) -> subprocess.CompletedProcess:
    """``extra-data-validate`` on a run directory (exit status 0: no problem found)."""
    return subprocess.run([tool("extra-data-validate"), str(run_dir)], capture_output=True, text=True, timeout=120)


def fault_config(tmp_path: Path, data_root: Path, calib_dir: Path, extra=None, functions=None) -> Path:
    """A producer config on ``data_root``: ROIs over the whole of modules 2 and 3, XGM and delay."""
    cfg = {
        "proposal": PROPOSAL, "data_root": str(data_root), "calib_dir": str(calib_dir),
        "output_dir": str(tmp_path / "out"), "batch_size": 8,
        "detectors": {"dssc": {"dark_run": DARK_RUN, "gain": None, "mask_asic_edges": False, "functions": functions or [
            {"type": "roi", "name": "m2", "module": 2, "roi": [0, 128, 0, 512]},
            {"type": "roi", "name": "m3", "module": 3, "roi": [0, 128, 0, 512]}]}},
        "point_data": {
            "xgm": {"sa3_intensity": {"source": XGM, "key": "data.intensitySa3TD", "per": "pulse", "units": "uJ"}},
            "scan": {"delay": {"source": "SCS_ILH_LAS/DOOCS/PPL_OPT_DELAY", "key": "actualPosition.value",
                               "units": "mm"}},
        },
    }
    if extra:
        extra(cfg)
    path = tmp_path / "producer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def invalid_pairs(output: Path) -> set:
    """(trainId, where) listed in /meta as not used because of mismatching ids."""
    with h5py.File(output, "r") as f:
        return {(int(t), w.decode() if isinstance(w, bytes) else w)
                for t, w in zip(f["meta/invalid_trainId"][()], f["meta/invalid_where"][()])}


def invalid_reasons(output: Path) -> list:
    """(trainId, where, reason) listed in /meta as not used."""
    with h5py.File(output, "r") as f:
        return [(int(t), w.decode() if isinstance(w, bytes) else w, r.decode() if isinstance(r, bytes) else r)
                for t, w, r in zip(f["meta/invalid_trainId"][()], f["meta/invalid_where"][()],
                                   f["meta/invalid_reason"][()])]


def incomplete_pairs(output: Path) -> set:
    """(trainId, module) listed in /meta/incomplete_trains."""
    with h5py.File(output, "r") as f:
        return {(int(t), int(m)) for t, m in f["meta/incomplete_trains"][()]}


def plant_zero_index_entry(run_dir: Path, aggregator: str, position: int, seq: int = 0) -> int:
    """``INDEX/trainId`` of file ``aggregator`` (any: DA01, DSSC02, ...) set to 0 at ``position``; returns its train."""
    with h5py.File(data_file(run_dir, aggregator, seq), "r+") as f:
        tid = int(f["INDEX/trainId"][position])
        f["INDEX/trainId"][position] = 0
    return tid


def plant_slipped_cells(run_dir: Path, module: int, position: int, n_cells: int, seq: int = 0) -> int:
    """The frames of the train at ``position`` of a module file record cell ``(cell + 1) % n_cells``; returns it."""
    with h5py.File(data_file(run_dir, f"DSSC{module:02d}", seq), "r+") as f:
        first = int(f[f"INDEX/{dssc(module)}/image/first"][position])
        count = int(f[f"INDEX/{dssc(module)}/image/count"][position])
        ds = f[f"INSTRUMENT/{dssc(module)}/image/cellId"]
        ds[first:first + count] = (ds[first:first + count].astype(np.int64) + 1) % n_cells
        return int(f["INDEX/trainId"][position])


def plant_index_count(run_dir: Path, module: int, position: int, extra: int = 1, seq: int = 0) -> None:
    """The INDEX count of a module file's train at ``position`` made ``extra`` larger (the data rows unchanged)."""
    with h5py.File(data_file(run_dir, f"DSSC{module:02d}", seq), "r+") as f:
        ds = f[f"INDEX/{dssc(module)}/image/count"]
        counts = ds[()]
        counts[position] += extra
        ds[...] = counts


def plant_short_dataset(run_dir: Path, module: int, key: str, missing: int, seq: int = 0) -> None:
    """Dataset ``image.<key>`` of a module file cut ``missing`` rows short of what its INDEX counts."""
    with h5py.File(data_file(run_dir, f"DSSC{module:02d}", seq), "r+") as f:
        ds = f[f"INSTRUMENT/{dssc(module)}/image/{key}"]
        ds.resize(ds.shape[0] - missing, axis=0)


def plant_xgm_values(run_dir: Path, position: int, values: dict, seq: int = 0) -> int:
    """XGM ``data.intensitySa3TD`` of the train at ``position`` set to ``{pulse: value}``; returns the train."""
    with h5py.File(data_file(run_dir, "DA01", seq), "r+") as f:
        first = int(f[f"INDEX/{XGM}/data/first"][position])
        ds = f[f"INSTRUMENT/{XGM}/data/intensitySa3TD"]
        row = ds[first]
        for pulse, value in values.items():
            row[pulse] = value
        ds[first] = row
        return int(f["INDEX/trainId"][position])
