"""The timing preset: a pump-probe run with a delay stage, trigger, BAM and photodiodes.

The regular run writer (:mod:`.runs`) writes the detector, XGM, bunch pattern and
digitizer; :class:`TimingRunSimulation` adds an aggregator (``DA02``) with:

- the delay line ``SCS_ILH_LAS/MOTOR/LT3``: ``targetPosition`` and ``actualPosition`` (mm)
  per train, a stepped scan over ``stage_steps_mm``; a step below the previous one is
  approached from below (one train at ``target - backlash_mm`` first), as a motor with
  backlash correction does; the actual position is the target plus encoder jitter, and
  mid-way during the backlash move;
- a trigger delay ``SCS_ILH_LAS/DOOCS/PPL_TRIGGER`` (``actualPosition``, ps, constant);
- the bunch arrival monitor ``SCS_ILH_LAS/DOOCS/BAM_414_B2:output`` (``data.absoluteTD``,
  fs, two entries per bunch-pattern slot: the pulse in slot s at entry ``2 s``) with
  Gaussian jitter per pulse and a slow drift per train; its control source has
  ``bamError`` (1 on the trains ``bam_error_trains``), and ``bam_nan_frames`` planted
  pulses read NaN;
- photodiodes ``SCS_LAS_PD/ADC/1:output``: ``data.reflectivity`` per X-ray pulse (entry k
  for the k-th pulse of the train, the rest 0): a slow additive drift for every pulse, plus
  on pump-laser pulses an error-function step at ``signal_t0_ps`` of FWHM
  ``signal_rise_ps`` with a linear after-step, against the true delay (stage, trigger and
  BAM); ``data.knife``: the transmission past a knife edge at ``SCS_EXP_KNIFE/MOTOR/X``
  (``actualPosition``, mm, scanned linearly over the run) of a Gaussian beam of rms width
  ``knife_sigma_mm``, proportional to the pulse's XGM energy.

Total delay (EXtra's ``OpticalLaserDelay`` convention):
``sign * passes * (stage - time_zero_mm) * 1e-3 / c - (trigger - trigger_ps) + bam``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.constants import speed_of_light
from scipy.special import erf, erfc

from smalldata.errors import ConfigError

from .config import SimulationConfig
from .runs import FIRST_FREE_STREAM, RunSimulation, simulate_run
from .xfel_files import AggregatorWriter, KeySpec, karabo_units

STAGE_SOURCE = "SCS_ILH_LAS/MOTOR/LT3"
TRIGGER_SOURCE = "SCS_ILH_LAS/DOOCS/PPL_TRIGGER"
BAM_DEVICE = "SCS_ILH_LAS/DOOCS/BAM_414_B2"
BAM_SOURCE = BAM_DEVICE + ":output"
BAM_KEY = "data.absoluteTD"
PD_SOURCE = "SCS_LAS_PD/ADC/1:output"
KNIFE_SOURCE = "SCS_EXP_KNIFE/MOTOR/X"
#: Entries per train of the photodiode arrays.
PD_ENTRIES = 1000
_S_TIMING = FIRST_FREE_STREAM + 10
GAUSS_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def ps_per_mm(passes: int) -> float:
    """Delay per mm of stage travel, ps (light passes the stage ``passes`` times)."""
    return passes * 1e-3 / speed_of_light * 1e12


def erf_step(t: np.ndarray, t0: float, fwhm: float) -> np.ndarray:
    """0 -> 1 step of a Gaussian response with full width at half maximum ``fwhm``."""
    return 0.5 * (1.0 + erf((t - t0) / (np.sqrt(2.0) * fwhm / GAUSS_FWHM)))


@dataclass
class TimingSimConfig:
    """What the timing preset plants (positions in mm as the motors, times in ps unless named fs).

    Attributes
    ----------
    stage_steps_mm : tuple of float
        Target positions of the stepped delay scan, in scan order.
    trains_per_step : int
        Trains at each target (after the backlash train, if any).
    backlash_mm : float
        Overshoot of the approach from below (0: none).
    stage_jitter_mm : float
        rms of the actual position around the target.
    time_zero_mm, passes, sign : float, int, int
        Stage position of zero delay, light passes over the stage, sign of the stage's delay.
    trigger_ps : float
        Trigger delay (constant; the config's reference takes it out).
    bam_offset_fs, bam_jitter_fs, bam_drift_fs : float
        BAM reading: offset, per-pulse rms jitter, amplitude of a slow per-train drift.
    bam_error_trains : tuple of int
        Train indices with ``bamError`` = 1.
    bam_nan_frames : int
        X-ray pulses (random) whose BAM entry is NaN.
    bam_entries_per_slot : int
        BAM entries per bunch-pattern slot (2 as at the facility).
    signal_t0_ps, signal_rise_ps, signal_amplitude, signal_slope_per_ps : float
        The pumped reflectivity change: ``amplitude * step(t - t0, FWHM rise) * (1 + slope (t - t0))``.
    signal_noise : float
        rms noise of every reflectivity reading.
    drift_amplitude, drift_period_trains : float
        Additive drift ``amplitude * sin(2 pi train / period)`` of every reading.
    knife_start_mm, knife_stop_mm, knife_center_mm, knife_sigma_mm, knife_noise : float
        Knife positions (linear over the run), beam centre and rms width, relative noise.
    """

    stage_steps_mm: Tuple[float, ...] = tuple(np.round(10.15 - 0.03 * np.arange(16), 6))
    trains_per_step: int = 2
    backlash_mm: float = 0.05
    stage_jitter_mm: float = 0.0005
    time_zero_mm: float = 10.0
    passes: int = 2
    sign: int = 1
    trigger_ps: float = 25.0
    bam_offset_fs: float = 1200.0
    bam_jitter_fs: float = 40.0
    bam_drift_fs: float = 60.0
    bam_error_trains: Tuple[int, ...] = (7,)
    bam_nan_frames: int = 3
    bam_entries_per_slot: int = 2
    signal_t0_ps: float = 0.35
    signal_rise_ps: float = 0.25
    signal_amplitude: float = 0.2
    signal_slope_per_ps: float = -0.1
    signal_noise: float = 0.01
    drift_amplitude: float = 0.15
    drift_period_trains: float = 30.0
    knife_start_mm: float = 4.8
    knife_stop_mm: float = 5.2
    knife_center_mm: float = 5.02
    knife_sigma_mm: float = 0.04
    knife_noise: float = 0.01

    def __post_init__(self):
        self.stage_steps_mm = tuple(float(v) for v in self.stage_steps_mm)
        self.bam_error_trains = tuple(int(v) for v in self.bam_error_trains)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if len(self.stage_steps_mm) < 1:
            raise ConfigError("TimingSimConfig.stage_steps_mm", "give at least one target position")
        if self.trains_per_step < 1:
            raise ConfigError("TimingSimConfig.trains_per_step", f"{self.trains_per_step} must be at least 1")
        if self.sign not in (1, -1) or self.passes < 1:
            raise ConfigError("TimingSimConfig.sign", "sign must be +1 or -1 and passes at least 1")
        if min(self.signal_rise_ps, self.knife_sigma_mm) <= 0:
            raise ConfigError("TimingSimConfig.signal_rise_ps", "rise time and knife width must be > 0")
        if self.bam_entries_per_slot < 1:
            raise ConfigError("TimingSimConfig.bam_entries_per_slot", "must be at least 1")

    def stage_trains(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-train ``(target, is_backlash)`` of the whole scan (its length is the run's train count)."""
        targets, backlash = [], []
        previous = None
        for pos in self.stage_steps_mm:
            if previous is not None and pos < previous and self.backlash_mm > 0:
                targets.append(pos - self.backlash_mm)
                backlash.append(True)
            targets += [pos] * self.trains_per_step
            backlash += [False] * self.trains_per_step
            previous = pos
        return np.array(targets), np.array(backlash)

    @property
    def n_trains(self) -> int:
        """Trains of the run."""
        return len(self.stage_trains()[0])

    def to_json(self) -> str:
        """The parameters as JSON (stored in the truth file)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def timing_simulation_config(timing: TimingSimConfig, **changes) -> SimulationConfig:
    """The run-writer configuration of the preset: module 2, 8 X-ray frames per train, the
    pump laser on every second X-ray pulse, one train per stage train."""
    base = dict(modules=(2,), n_trains=timing.n_trains, frames_per_train=8, sequence_trains=100, dark_trains=20,
                pattern=("image",), laser_pulses=(0, 2), delay_steps=1, speckle_mean_photons=0.0,
                ring_peak_photons=0.01)
    base.update(changes)
    return SimulationConfig(**base)


class TimingRunSimulation(RunSimulation):
    """A run of the timing preset: the regular writer plus the timing aggregator ``DA02``."""

    def __init__(self, timing: TimingSimConfig, cfg: SimulationConfig, proposal: int, run: int, dark: bool,
                 run_dir: Path):
        super().__init__(cfg, proposal, run, dark, run_dir)
        self.timing = t = timing
        n = self.n_trains
        targets, backlash = t.stage_trains()
        if not dark and len(targets) != n:
            raise ConfigError("SimulationConfig.n_trains", f"{n} trains, but the stage scan has {len(targets)}; "
                                                           "use timing_simulation_config(timing)")
        if dark:
            targets, backlash = np.full(n, t.stage_steps_mm[0]), np.zeros(n, bool)
        rng = self.rng(_S_TIMING)
        actual = targets + rng.normal(0.0, t.stage_jitter_mm, n)
        actual[backlash] = targets[backlash] + 0.5 * t.backlash_mm  # moving through the overshoot
        self.stage_target, self.stage_actual, self.stage_backlash = targets, actual, backlash
        self.knife = np.linspace(t.knife_start_mm, t.knife_stop_mm, n)
        self.bam_drift = t.bam_drift_fs * np.sin(2 * np.pi * np.arange(n) / max(n, 2))
        self.drift = t.drift_amplitude * np.sin(2 * np.pi * np.arange(n) / t.drift_period_trains)
        self.bam_len = t.bam_entries_per_slot * cfg.bunch_table_length
        mm = karabo_units("m", "meter", "m", "milli")
        instrument = {BAM_SOURCE: {BAM_KEY: KeySpec(np.float32, (self.bam_len,),
                                                    attrs=karabo_units("s", "second", "f", "femto"))},
                      PD_SOURCE: {"data.reflectivity": KeySpec(np.float32, (PD_ENTRIES,)),
                                  "data.knife": KeySpec(np.float32, (PD_ENTRIES,))}}
        control = {STAGE_SOURCE: {"actualPosition": KeySpec(np.float64, attrs=mm),
                                  "targetPosition": KeySpec(np.float64, attrs=mm)},
                   TRIGGER_SOURCE: {"actualPosition": KeySpec(np.float64,
                                                              attrs=karabo_units("s", "second", "p", "pico"))},
                   BAM_DEVICE: {"bamError": KeySpec(np.int32)},
                   KNIFE_SOURCE: {"actualPosition": KeySpec(np.float64, attrs=mm)}}
        self.timing_writer = AggregatorWriter(run_dir, proposal, run, "DA02", cfg.sequence_trains,
                                              instrument=instrument, control=control)
        self.planted: Dict[str, list] = {k: [] for k in ("frame_delay_ps", "frame_bam_fs", "frame_bam_valid",
                                                         "frame_reflectivity", "frame_reflectivity_step",
                                                         "frame_knife", "frame_drift")}
        # X-ray pulses whose BAM reads NaN: (train index, pulse index)
        n_pulses = int(np.sum([is_x for is_x in self._layout(0).xray]))
        picks = rng.choice(n * max(n_pulses, 1), size=min(t.bam_nan_frames, n * max(n_pulses, 1)), replace=False)
        self.bam_nan = {(int(p // max(n_pulses, 1)), int(p % max(n_pulses, 1))) for p in picks} if not dark else set()

    def write_train(self, t: int, pool) -> None:
        """The regular train, then the timing sources of train ``t``."""
        super().write_train(t, pool)
        from .runs import EPOCH_NS, TRAIN_PERIOD_NS

        cfg, tm = self.cfg, self.timing
        tid = int(self.train_ids[t])
        ts = EPOCH_NS + self.run * 3600 * 10 ** 9 + t * TRAIN_PERIOD_NS
        lay = self._layout(t)
        n = len(lay)
        rng = self.rng(_S_TIMING, t)
        xi = np.flatnonzero(lay.xray)
        slots = lay.slots[xi].astype(np.int64)
        bam = np.full(self.bam_len, np.nan, np.float32)
        true_bam = tm.bam_offset_fs + self.bam_drift[t] + rng.normal(0.0, tm.bam_jitter_fs, len(xi))
        pulse_bam = true_bam.copy()  # the reading: the arrival time, NaN at the planted pulses
        for k in range(len(xi)):
            if (t, k) in self.bam_nan:
                pulse_bam[k] = np.nan
        bam[tm.bam_entries_per_slot * slots] = pulse_bam
        error = int(t in tm.bam_error_trains)
        stage_ps = tm.sign * (self.stage_actual[t] - tm.time_zero_mm) * ps_per_mm(tm.passes)
        delay = np.full(n, np.nan)
        delay[xi] = stage_ps + (true_bam - tm.bam_offset_fs) * 1e-3
        laser = lay.laser[xi]
        tau = delay[xi] - tm.signal_t0_ps
        step = tm.signal_amplitude * erf_step(delay[xi], tm.signal_t0_ps, tm.signal_rise_ps) \
            * (1.0 + tm.signal_slope_per_ps * tau)
        refl = np.zeros(PD_ENTRIES, np.float32)
        values = self.drift[t] + np.where(laser, step, 0.0) + rng.normal(0.0, tm.signal_noise, len(xi))
        refl[:len(xi)] = values
        xgm_rel = np.asarray(self.frames["frame_xgm"][-1])[xi] / cfg.xgm_mean_uj
        transmitted = 0.5 * erfc((self.knife[t] - tm.knife_center_mm) / (np.sqrt(2.0) * tm.knife_sigma_mm))
        knife = np.zeros(PD_ENTRIES, np.float32)
        knife[:len(xi)] = xgm_rel * transmitted * (1.0 + rng.normal(0.0, tm.knife_noise, len(xi)))
        self.timing_writer.write_train(tid, ts, {
            BAM_SOURCE: {BAM_KEY: bam[None]},
            PD_SOURCE: {"data.reflectivity": refl[None], "data.knife": knife[None]},
        }, {
            STAGE_SOURCE: {"actualPosition": float(self.stage_actual[t]),
                           "targetPosition": float(self.stage_target[t])},
            TRIGGER_SOURCE: {"actualPosition": float(tm.trigger_ps)},
            BAM_DEVICE: {"bamError": error},
            KNIFE_SOURCE: {"actualPosition": float(self.knife[t])},
        })
        per_frame = {k: np.full(n, np.nan) for k in self.planted}
        per_frame["frame_delay_ps"] = delay
        per_frame["frame_bam_fs"][xi] = pulse_bam
        valid = np.zeros(n, bool)
        valid[xi] = np.isfinite(pulse_bam) & (error == 0)
        per_frame["frame_bam_valid"] = valid
        per_frame["frame_reflectivity"][xi] = values
        per_frame["frame_reflectivity_step"][xi] = np.where(laser, step, 0.0)
        per_frame["frame_knife"][xi] = knife[:len(xi)]
        per_frame["frame_drift"][:] = self.drift[t]
        for k, v in per_frame.items():
            self.planted[k].append(v)

    def close(self) -> None:
        """Finish every sequence file, the timing aggregator's too."""
        super().close()
        self.timing_writer.close()

    def extra_truth(self) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
        """Per-frame planted delays, BAM and signals; per-train stage; the preset's parameters."""
        data: Dict[str, np.ndarray] = {"stage_target_mm": self.stage_target, "stage_actual_mm": self.stage_actual,
                                       "stage_backlash": self.stage_backlash, "knife_mm": self.knife,
                                       "train_drift": self.drift}
        if not self.dark:
            data.update({k: np.concatenate(v) for k, v in self.planted.items()})
        return data, {"timing_config": self.timing.to_json()}


def simulate_timing_run(root: os.PathLike, proposal: int, run: int, timing: Optional[TimingSimConfig] = None,
                        cfg: Optional[SimulationConfig] = None, dark: bool = False, overwrite: bool = False,
                        threads: Optional[int] = None) -> Path:
    """Write a run of the timing preset (and its truth file); returns the run directory.

    Parameters
    ----------
    root, proposal, run, overwrite, threads
        As :func:`~smalldata.simulate.runs.simulate_run`.
    timing : TimingSimConfig, optional
        What to plant (default ``TimingSimConfig()``).
    cfg : SimulationConfig, optional
        The run writer's settings; default :func:`timing_simulation_config`.
    dark : bool
        A dark run (no X-rays, stage at its first position).
    """
    timing = timing or TimingSimConfig()
    cfg = cfg or timing_simulation_config(timing)
    return simulate_run(root, proposal, run, cfg, dark, overwrite, threads,
                        simulation=partial(TimingRunSimulation, timing))
