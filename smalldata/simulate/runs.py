"""Simulated dark and data runs: EuXFEL raw files plus a truth file.

A run is written train by train into a hidden ``.r0614-partial`` directory next to
its final place (removed again on failure) and renamed when complete; the truth file
(:func:`~smalldata.simulate.truth.truth_path`) is written last. Memory stays bounded
by one train of all modules plus the detector constants.

Randomness: detector constants from ``cfg.detector_seed``; everything else from
``numpy.random.default_rng([cfg.seed, run, stream, train_index, ...])`` so each module
and train has its own stream, independent of the module subset and of the order of work.

Presets with their own physics subclass :class:`RunSimulation` and override its hooks
:meth:`~RunSimulation.module_frames` (the raw frames of one module in one train) and
:meth:`~RunSimulation.extra_truth` (their entries of the truth file), then write runs
with :func:`simulate_run`; everything else (files, scans, XGM, digitizer, truth) stays
the regular writer's.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from smalldata import constants as C
from smalldata.errors import SmallDataError
from smalldata.geometry.positions import load_dssc_geometry, pixel_positions

from . import facility, physics
from .config import SimulationConfig
from .detector import N_PIXELS, DetectorModel
from .timing import TrainLayout, scan_values, train_layout
from .truth import run_path, run_truth_attrs, run_truth_datasets, truth_path, write_truth
from .xfel_files import AggregatorWriter, KeySpec, karabo_units

log = logging.getLogger(__name__)

# per-run RNG streams (presets use streams from FIRST_FREE_STREAM on)
_S_XGM, _S_SPECKLE, _S_MODULE, _S_DIGITIZER = 1, 2, 3, 4
#: First random stream number free for presets (:meth:`RunSimulation.rng`).
FIRST_FREE_STREAM = 5
#: Time of ``first_train_id`` of run 0, ns since the epoch (2026-01-01T00:00:00Z); runs are an hour apart.
EPOCH_NS = 1_767_225_600 * 10 ** 9
TRAIN_PERIOD_NS = 100_000_000
DETECTOR_DATA_SIZE = 416
OTHER_AGGREGATOR = "DA01"
_FRAME_KEYS = ("frame_train_id", "frame_index", "frame_pulse_id", "frame_cell_id", "frame_xray", "frame_laser",
               "frame_label", "frame_xgm", "frame_delay", "frame_pump_factor", "frame_photons",
               "frame_speckle_photons", "frame_digitizer_integral")


def simulate_dark_run(root: os.PathLike, proposal: int, run: int, cfg: Optional[SimulationConfig] = None,
                      overwrite: bool = False, threads: Optional[int] = None) -> Path:
    """Write a dark run (no X-rays, no laser) of ``cfg.dark_trains`` trains.

    Parameters
    ----------
    root : path
        Data root (``EXTRA_DATA_DATA_ROOT``); the run goes to :func:`run_path`.
    proposal, run : int
    cfg : SimulationConfig, optional
        Default ``SimulationConfig()``.
    overwrite : bool
        Replace an existing run directory and truth file (else SmallDataError).
    threads : int, optional
        Worker threads making module frames (default: CPU count); the output does not depend on it.

    Returns
    -------
    Path
        The run directory.
    """
    return simulate_run(root, proposal, run, cfg or SimulationConfig(), True, overwrite, threads)


def simulate_data_run(root: os.PathLike, proposal: int, run: int, cfg: Optional[SimulationConfig] = None,
                      overwrite: bool = False, threads: Optional[int] = None) -> Path:
    """Write a data run of ``cfg.n_trains`` trains with planted physics; parameters as :func:`simulate_dark_run`."""
    return simulate_run(root, proposal, run, cfg or SimulationConfig(), False, overwrite, threads)


def _n_threads(threads: Optional[int], n_modules: int) -> int:
    if threads is None:
        threads = os.cpu_count() or 1
    return max(1, min(int(threads), n_modules))


# ---------------------------------------------------------------------- sources
def _module_sources(module: int) -> Dict[str, Dict[str, KeySpec]]:
    adu = karabo_units("ADU", "count")
    return {C.dssc_source(module): {
        "image.data": KeySpec(np.uint16, (1,) + C.DSSC_MODULE_SHAPE, chunk_entries=1, attrs=adu),
        "image.trainId": KeySpec(np.uint64, (1,)),
        "image.pulseId": KeySpec(np.uint64, (1,)),
        "image.cellId": KeySpec(np.uint16, (1,)),
        "header.pulseCount": KeySpec(np.uint64, ()),
        "trailer.status": KeySpec(np.uint64, ()),
        "detector.data": KeySpec(np.uint8, (DETECTOR_DATA_SIZE,)),
    }}


# ---------------------------------------------------------------------- planted photons
class _RingPlan:
    """Ring expectation per module at one photon energy, on its support (cut-off, no dead pixels)."""

    def __init__(self, cfg: SimulationConfig, x: np.ndarray, y: np.ndarray, det: DetectorModel,
                 photon_energy: float, roi_mask: Optional[np.ndarray]):
        q = physics.q_map(x, y, cfg.beam_center, cfg.distance, photon_energy).reshape(len(det.modules), N_PIXELS)
        lam = physics.ring_expectation(q, cfg.ring_q, cfg.ring_sigma_q, cfg.ring_peak_photons)
        lam[(lam < physics.RING_CUTOFF * cfg.ring_peak_photons) | det.dead] = 0.0
        self.lam = lam
        self.pixels = [np.flatnonzero(row) for row in lam]
        self.values = [row[p] for row, p in zip(lam, self.pixels)]
        self.in_roi = [roi_mask[p] if roi_mask is not None else np.zeros(len(p), bool) for p in self.pixels]


def _poisson_rows(lam_rows: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, S) int32 photon counts: Poisson of ``lam_rows`` in ``rows``, zero elsewhere."""
    counts = np.zeros((n, lam_rows.shape[1]), np.int32)
    if len(rows):
        counts[rows] = rng.poisson(lam_rows)
    return counts


# ---------------------------------------------------------------------- the run
def _prepare_dirs(root, proposal: int, run: int, overwrite: bool):
    final = run_path(root, proposal, run)
    truth = truth_path(root, proposal, run)
    if (final.exists() or truth.exists()) and not overwrite:
        raise SmallDataError(f"run directory {final} already exists; pass --overwrite (overwrite=True) to replace it")
    partial = final.parent / f".{final.name}-partial"
    if partial.exists():
        if not overwrite:
            raise SmallDataError(f"{partial} exists: another simulation of run {run} is running or was "
                                 f"interrupted; pass --overwrite (overwrite=True) to start again")
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return final, truth, partial


def simulate_run(root: os.PathLike, proposal: int, run: int, cfg: SimulationConfig, dark: bool = False,
                 overwrite: bool = False, threads: Optional[int] = None,
                 simulation: Optional[Callable[..., "RunSimulation"]] = None) -> Path:
    """Write one run with its truth file.

    Parameters
    ----------
    root, proposal, run, overwrite, threads
        As :func:`simulate_dark_run`.
    cfg : SimulationConfig
    dark : bool
        A dark run (no X-rays, no laser) instead of a data run.
    simulation : callable, optional
        ``simulation(cfg, proposal, run, dark, run_dir)`` returns the :class:`RunSimulation`
        (a preset's subclass); default :class:`RunSimulation`.

    Returns
    -------
    Path
        The run directory.
    """
    cfg.validate()
    proposal, run = int(proposal), int(run)
    final, truth_file, partial = _prepare_dirs(root, proposal, run, overwrite)
    t_start = time.monotonic()
    try:
        sim = (simulation or RunSimulation)(cfg, proposal, run, dark, partial)
        log.info("simulating %s run %d: modules %s, %d trains, %d frames -> %s", sim.kind, run, list(cfg.modules),
                 sim.n_trains, sum(sim.counts), final)
        log_every = max(1, sim.n_trains // 10)
        with ThreadPoolExecutor(max_workers=_n_threads(threads, len(cfg.modules))) as pool:
            try:
                for t in range(sim.n_trains):
                    sim.write_train(t, pool)
                    if (t + 1) % log_every == 0 or t + 1 == sim.n_trains:
                        log.info("%s run %d: wrote %d of %d trains (%.0f s)", sim.kind, run, t + 1, sim.n_trains,
                                 time.monotonic() - t_start)
            finally:
                sim.close()
        partial_truth = partial.parent / f".{truth_file.name}-partial"
        datasets, attrs = sim.truth()
        write_truth(partial_truth, datasets, attrs)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    os.replace(partial_truth, truth_file)
    log.info("%s run %d done in %.1f s: %s", sim.kind, run, time.monotonic() - t_start, final)
    return final


@dataclass
class TrainPlan:
    """What the modules of one train share: the argument of :meth:`RunSimulation.module_frames`.

    Attributes
    ----------
    index : int
        Position of the train in the run.
    layout : TrainLayout
        The train's frames: memory cells, slots, X-ray and laser flags, labels.
    xray : (k,) int64
        Frames with an X-ray pulse.
    intensity : (n,) float64
        Each frame's pulse energy over the mean (0 without X-rays).
    pump : (n,) float64
        Each frame's pump factor of the sample response (1 without the laser).
    ring, speckle
        The default physics' ring plan at the train's photon energy and speckle expectation
        (``(k, S)`` in the speckle ROI), or None.
    """

    index: int
    layout: TrainLayout
    xray: np.ndarray
    intensity: np.ndarray
    pump: np.ndarray
    ring: Optional[_RingPlan] = None
    speckle: Optional[np.ndarray] = None


class RunSimulation:
    """The plan of one run and its writers; :meth:`write_train` makes and writes one train.

    The base of presets: a subclass overrides :meth:`module_frames` and :meth:`extra_truth`
    and may use :attr:`cfg`, :attr:`det` (pedestal, noise and bad pixels per module),
    :attr:`modules`, :attr:`dark`, :attr:`delays`, :attr:`energies` (per train) and
    :meth:`rng`.

    Parameters
    ----------
    cfg : SimulationConfig
    proposal, run : int
    dark : bool
    run_dir : Path
        Where the files are written (the hidden partial directory).
    """

    def __init__(self, cfg: SimulationConfig, proposal: int, run: int, dark: bool, run_dir: Path):
        self.cfg, self.proposal, self.run, self.dark = cfg, proposal, run, dark
        self.kind = "dark" if dark else "data"
        modules = self.modules = cfg.modules
        self.n_trains = n_trains = cfg.dark_trains if dark else cfg.n_trains
        self.counts = [cfg.dark_frames] * n_trains if dark else cfg.train_frame_counts()
        self.train_ids = np.arange(cfg.first_train_id, cfg.first_train_id + n_trains, dtype=np.uint64)
        self.missing = np.zeros((len(modules), n_trains), bool)
        if not dark:
            for m, trains in cfg.module_missing_trains.items():
                self.missing[modules.index(m), list(trains)] = True
        energy_steps = cfg.photon_energy_steps or (cfg.photon_energy,)
        if dark:
            self.delays = np.full(n_trains, float(cfg.delay_start))
            self.energies = np.full(n_trains, float(energy_steps[0]))
        else:
            self.delays = scan_values(n_trains, np.linspace(cfg.delay_start, cfg.delay_stop, cfg.delay_steps))
            self.energies = scan_values(n_trains, energy_steps)

        self.det = DetectorModel(cfg, cfg.n_cells(dark))
        self.speckle_i = modules.index(cfg.speckle_module) if (cfg.speckle_module in modules and not dark) else None
        self.roi_pixels = physics.roi_flat_indices(cfg.speckle_roi)
        roi_mask = np.zeros(N_PIXELS, bool)
        roi_mask[self.roi_pixels] = True
        self.plans: Dict[float, _RingPlan] = {}
        if not dark:
            geom = load_dssc_geometry(cfg.geometry_file, cfg.quadrant_positions)
            x, y, _ = pixel_positions(geom, modules)
            for e in sorted(set(self.energies.tolist()) | {cfg.photon_energy}):
                self.plans[e] = _RingPlan(cfg, x, y, self.det, e, roi_mask)

        self.n_samples = cfg.digitizer_trace_length()
        instrument, control, run_only = facility.other_sources(self.n_samples, cfg.bunch_table_length)
        first = self._layout(0)
        run_values = facility.run_values(self.delays[0], self.energies[0], cfg.xgm_mean_uj, int(first.xray.sum()))
        self.writers = [AggregatorWriter(run_dir, proposal, run, C.dssc_aggregator(m), cfg.sequence_trains,
                                         instrument=_module_sources(m)) for m in modules]
        self.other = AggregatorWriter(run_dir, proposal, run, OTHER_AGGREGATOR, cfg.sequence_trains,
                                      instrument=instrument, control=control, run_values=run_values,
                                      run_only=run_only)
        self.frames: Dict[str, List[np.ndarray]] = {k: [] for k in _FRAME_KEYS}
        #: per train: real slot of the first laser pulse, slots of the first two X-ray pulses (-1: none)
        self.train_slots = np.full((n_trains, 3), -1, np.int64)

    def _layout(self, t: int):
        cfg = self.cfg
        return train_layout(self.counts[t], cfg.pattern, cfg.first_slot, cfg.slot_spacing, beam_off=self.dark,
                            laser_pulses=cfg.laser_pulses)

    def rng(self, stream: int, *idx: int) -> np.random.Generator:
        """The random stream ``stream`` of this run at ``idx`` (streams below :data:`FIRST_FREE_STREAM` are taken)."""
        return np.random.default_rng([self.cfg.seed, self.run, stream, *idx])

    def write_train(self, t: int, pool: ThreadPoolExecutor) -> None:
        """Make train ``t`` of every module (in ``pool``) and of the other sources, and write it."""
        cfg, modules = self.cfg, self.modules
        tid, n = int(self.train_ids[t]), self.counts[t]
        ts = EPOCH_NS + self.run * 3600 * 10 ** 9 + t * TRAIN_PERIOD_NS
        lay = self._layout(t)
        xi = np.flatnonzero(lay.xray)
        xs = lay.slots[xi].astype(np.int64)
        self.train_slots[t] = lay.laser_first_slot, xs[0] if len(xs) else -1, xs[1] if len(xs) > 1 else -1
        xgm = np.zeros(n)
        xgm[xi] = physics.xgm_pulse_energies(len(xi), cfg.xgm_mean_uj, cfg.xgm_log_sigma, self.rng(_S_XGM, t))
        rel = xgm / cfg.xgm_mean_uj
        pump = np.where(lay.laser, physics.pump_factor(self.delays[t], cfg.pump_amplitude, cfg.pump_t0,
                                                       cfg.pump_tau), 1.0)
        speckle_lam = None
        if self.speckle_i is not None and len(xi) and cfg.speckle_mean_photons > 0:
            y0, y1, x0, x1 = cfg.speckle_roi
            inten = physics.speckle_intensity((len(xi), y1 - y0, x1 - x0), cfg.speckle_contrast,
                                              cfg.speckle_size_px, self.rng(_S_SPECKLE, t))
            speckle_lam = cfg.speckle_mean_photons * inten.reshape(len(xi), -1) * rel[xi, None]
            speckle_lam[:, self.det.dead[self.speckle_i, self.roi_pixels]] = 0.0
        train = TrainPlan(t, lay, xi, rel, pump, self.plans.get(float(self.energies[t])), speckle_lam)

        def make(i: int):
            return None if self.missing[i, t] else self.module_frames(i, train)

        photons = np.zeros((n, len(modules)), np.int64)
        roi_photons = np.zeros(n, np.int64)
        for i, (m, result) in enumerate(zip(modules, pool.map(make, range(len(modules))))):
            if result is None:
                self.writers[i].write_train(tid, ts, {})
                continue
            raw, photons[:, i], n_roi = result
            roi_photons += n_roi
            self.writers[i].write_train(tid, ts, {C.dssc_source(m): {
                "image.data": raw,
                "image.trainId": np.full((n, 1), tid, np.uint64),
                "image.pulseId": lay.slots[:, None],
                "image.cellId": lay.cells[:, None],
                "header.pulseCount": np.array([n], np.uint64),
                "trailer.status": np.zeros(1, np.uint64),
                "detector.data": np.zeros((1, DETECTOR_DATA_SIZE), np.uint8),
            }})
        integrals = facility.write_other_train(self.other, cfg, self.rng(_S_DIGITIZER, t), tid, ts, lay, xi, xgm,
                                 self.delays[t], self.energies[t], self.n_samples)
        for key, value in zip(_FRAME_KEYS, (
                np.full(n, tid, np.uint64), np.arange(n), lay.slots, lay.cells, lay.xray, lay.laser,
                np.array(lay.labels, dtype=str), xgm, np.full(n, self.delays[t]), pump, photons, roi_photons,
                integrals)):
            self.frames[key].append(value)

    def module_frames(self, i: int, train: TrainPlan) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hook: the frames of module ``self.modules[i]`` in ``train`` (called in worker threads).

        Returns
        -------
        raw : (n, 1, 128, 512) uint16
        photons : (n,) int64
            Photons planted on the module per frame (truth ``frame_photons``).
        roi_photons : (n,) int64
            Of those, the photons in the speckle ROI (truth ``frame_speckle_photons``).
        """
        lay, xi, t, plan, speckle_lam = train.layout, train.xray, train.index, train.ring, train.speckle
        ring_scale = train.intensity[xi] * train.pump[xi]
        n = len(lay)
        rng = self.rng(_S_MODULE, t, self.modules[i])
        pixels, counts = [], []
        n_ph, n_roi = np.zeros(n, np.int64), np.zeros(n, np.int64)
        if plan is not None and len(xi):
            ring = _poisson_rows(plan.values[i][None, :] * ring_scale[:, None], xi, n, rng)
            pixels.append(plan.pixels[i])
            counts.append(ring)
            n_ph += ring.sum(axis=1)
            if i == self.speckle_i:
                n_roi += ring[:, plan.in_roi[i]].sum(axis=1)
        if i == self.speckle_i and speckle_lam is not None:
            speckle = _poisson_rows(speckle_lam, xi, n, rng)
            pixels.append(self.roi_pixels)
            counts.append(speckle)
            n_ph += speckle.sum(axis=1)
            n_roi += speckle.sum(axis=1)
        return self.det.raw_frames(i, lay.cells, rng, pixels, counts), n_ph, n_roi

    def close(self) -> None:
        """Finish all sequence files."""
        for w in self.writers + [self.other]:
            w.close()

    def truth(self):
        """(datasets, attributes) of the truth file."""
        datasets = run_truth_datasets(self.cfg, self.det, self.modules, self.train_ids, self.counts, self.missing,
                                   self.delays, self.energies, self.plans, self.speckle_i, self.roi_pixels,
                                   self.dark)
        datasets["train_laser_first_slot"] = self.train_slots[:, 0]
        if not self.dark:
            datasets.update({k: np.concatenate(v) for k, v in self.frames.items()})
        attrs = run_truth_attrs(self.cfg, self.proposal, self.run, self.kind, self.n_samples)
        attrs.update(facility.laser_anchors(*self.train_slots.T))
        extra_datasets, extra_attrs = self.extra_truth()
        datasets.update(extra_datasets)
        attrs.update(extra_attrs)
        return datasets, attrs

    def extra_truth(self) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
        """Hook: a preset's (datasets, attributes) added to the truth file (after all trains)."""
        return {}, {}
