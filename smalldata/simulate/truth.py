"""The truth file next to a simulated run: what was planted, dataset by dataset.

See ``docs/simulator.md`` for every dataset and attribute.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping

import h5py
import numpy as np

from smalldata import constants as C
from smalldata.errors import DataError

from . import physics
from .config import CYCLE, SimulationConfig
from .detector import N_PIXELS

#: Units of the truth datasets (``units`` attribute).
TRUTH_UNITS = {
    "pedestal": "ADU", "noise": "ADU", "mean_photons": "photon", "frame_xgm": "uJ",
    "frame_delay": "mm", "train_delay": "mm", "train_photon_energy": "eV", "frame_photons": "photon",
    "frame_speckle_photons": "photon", "frame_digitizer_integral": "ADU*sample",
    "frame_pump_factor": "1",
}


def run_path(root: os.PathLike, proposal: int, run: int) -> Path:
    """``<root>/SCS/202601/p{proposal:06d}/raw/r{run:04d}``: where a simulated run goes."""
    return Path(root) / "SCS" / CYCLE / f"p{int(proposal):06d}" / "raw" / f"r{int(run):04d}"


def truth_path(root: os.PathLike, proposal: int, run: int) -> Path:
    """``<root>/SCS/202601/p{proposal:06d}/raw/r{run:04d}-truth.h5``: the run's truth file."""
    rp = run_path(root, proposal, run)
    return rp.parent / f"{rp.name}-truth.h5"


def write_truth(path: Path, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, object]) -> None:
    """Write the truth file (datasets get a ``units`` attribute where one applies)."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            value = np.asarray(value)
            if value.dtype.kind in "UO":
                ds = f.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
            elif value.dtype == bool and value.size > 1024:
                ds = f.create_dataset(name, data=value, compression="gzip", compression_opts=1)
            else:
                ds = f.create_dataset(name, data=value)
            if name in TRUTH_UNITS:
                ds.attrs["units"] = TRUTH_UNITS[name]
        for name, value in attrs.items():
            if value is None:
                value = ""
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
                value = np.array(value, dtype=h5py.string_dtype())
            f.attrs[name] = value


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in value.ravel()]).reshape(value.shape)
    return value


def read_truth(root: os.PathLike, proposal: int, run: int) -> Dict[str, object]:
    """Every dataset (numpy array; strings as str arrays) and attribute of a run's truth file."""
    path = truth_path(root, proposal, run)
    if not path.is_file():
        raise DataError(f"truth file {path} does not exist; simulate the run first (smd_simulate)")
    out: Dict[str, object] = {}
    with h5py.File(path, "r") as f:
        for name, ds in f.items():
            if h5py.check_string_dtype(ds.dtype) is not None:
                out[name] = np.array(ds.asstr()[()], dtype=str)
            else:
                out[name] = ds[()]
        for name, value in f.attrs.items():
            out[name] = _plain(value)
    return out


def run_truth_datasets(cfg, det, modules, train_ids, counts, missing, delays, energies, plans, speckle_i,
                       roi_pixels, dark) -> Dict[str, np.ndarray]:
    """The regular datasets of a run's truth file (detector constants, trains, scans, mean photons)."""
    mean = np.zeros((len(modules), N_PIXELS), np.float32)
    if not dark:
        mean += plans[cfg.photon_energy].lam.astype(np.float32)
        if speckle_i is not None:
            mean[speckle_i, roi_pixels] += np.float32(cfg.speckle_mean_photons) * ~det.dead[speckle_i, roi_pixels]
    shape = C.DSSC_MODULE_SHAPE
    return {
        "modules": np.array(modules, np.int64),
        "train_ids": train_ids,
        "frames_per_train": np.array(counts, np.int64),
        "module_missing": missing,
        "cell_ids": np.arange(det.n_cells, dtype=np.uint16),
        "pedestal": det.shaped("pedestal"),
        "noise": det.shaped("noise"),
        "bad_dead": det.shaped("dead"),
        "bad_hot": det.shaped("hot"),
        "bad_noisy": det.shaped("noisy"),
        "mean_photons": mean.reshape((len(modules),) + shape),
        "train_delay": np.asarray(delays, np.float64),
        "train_photon_energy": np.asarray(energies, np.float64),
    }


def run_truth_attrs(cfg: SimulationConfig, proposal: int, run: int, kind: str, n_samples: int) -> Dict[str, object]:
    """The regular attributes of a run's truth file (every planted parameter of ``cfg``)."""
    from smalldata.geometry.positions import default_geometry_file

    return {
        "run_type": kind, "proposal": proposal, "run": run,
        "gain_adu_per_photon": cfg.gain_adu_per_photon,
        "photon_energy_ev": cfg.photon_energy, "distance_m": cfg.distance,
        "beam_center_m": np.array(cfg.beam_center), "ring_q": cfg.ring_q, "ring_sigma_q": cfg.ring_sigma_q,
        "ring_peak_photons": cfg.ring_peak_photons, "ring_cutoff": physics.RING_CUTOFF,
        "speckle_module": cfg.speckle_module, "speckle_roi": np.array(cfg.speckle_roi),
        "speckle_mean_photons": cfg.speckle_mean_photons, "speckle_contrast": cfg.speckle_contrast,
        "speckle_size_px": cfg.speckle_size_px,
        "pump_amplitude": cfg.pump_amplitude, "pump_t0": cfg.pump_t0, "pump_tau": cfg.pump_tau,
        "delay_units": "mm", "xgm_mean_uj": cfg.xgm_mean_uj, "xgm_log_sigma": cfg.xgm_log_sigma,
        "seed": cfg.seed, "detector_seed": cfg.detector_seed, "pattern": list(cfg.pattern),
        "first_slot": cfg.first_slot, "slot_spacing": cfg.slot_spacing,
        "laser_pulses": np.array(cfg.laser_pulses if cfg.laser_pulses is not None else (-1, -1)),
        "bunch_table_length": cfg.bunch_table_length,
        "sequence_trains": cfg.sequence_trains, "first_train_id": cfg.first_train_id,
        "digitizer_first_sample": cfg.digitizer_first_sample,
        "digitizer_samples_per_slot": cfg.digitizer_samples_per_slot, "digitizer_n_samples": n_samples,
        "digitizer_baseline_adu": cfg.digitizer_baseline_adu, "digitizer_noise_adu": cfg.digitizer_noise_adu,
        "digitizer_adu_per_uj": cfg.digitizer_adu_per_uj,
        "digitizer_pulse_sigma_samples": cfg.digitizer_pulse_sigma_samples,
        "hot_offset_adu": cfg.hot_offset_adu, "noisy_factor": cfg.noisy_factor,
        "geometry_file": str(cfg.geometry_file or default_geometry_file()),
        "quadrant_positions_m": np.array(cfg.quadrant_positions),
        "config_json": cfg.to_json(),
    }
