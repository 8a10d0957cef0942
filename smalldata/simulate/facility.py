"""The non-detector sources of a simulated run, laid out as the facility writes them.

Facility tools find devices by their control source and its ``classId`` (RUN section,
extra-data's ``SourceData.device_class``), so every device here has one:

- XGM ``SCS_BLU_XGM/XGM/DOOCS`` (``DoocsXGM``): pulse counts (all, SASE1, SASE3),
  wavelength and slow train energies per train; its fast output ``:output`` has
  ``data.intensityTD`` / ``intensitySa1TD`` / ``intensitySa3TD`` (1000 entries, uJ; the
  first n entries for n pulses, the rest the XGM's filler 1.0).
- timeserver ``SCS_RR_UTC/TSYS/TIMESERVER`` (``TimeServer``): the bunch-pattern table in
  its control data and on the pipeline ``:outputBunchPattern`` (``data.bunchPatternTable``).
- digitizer ``SCS_UTC1_ADQ/ADC/1:network`` (traces, device integrals), delay stage and
  monochromator (control data only).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from smalldata import constants as C

from . import physics
from .config import SimulationConfig
from .timing import TrainLayout, bunch_pattern_table
from .xfel_files import AggregatorWriter, KeySpec, karabo_units

#: Control-source class names (RUN ``classId``) as the facility's devices report them.
XGM_CLASS = "DoocsXGM"
TIMESERVER_CLASS = "TimeServer"
#: Entries of the XGM's per-pulse arrays beyond the train's pulses.
XGM_FILLER = 1.0
_DELAY = C.DELAY_KEY.rsplit(".", 1)[0]            # "actualPosition"
_ENERGY = C.PHOTON_ENERGY_KEY.rsplit(".", 1)[0]   # "actualEnergy"
_XGM_KEYS = ("data.intensityTD", "data.intensitySa1TD", "data.intensitySa3TD")
_XGM_COUNTS = ("pulseEnergy.numberOfBunchesActual", "pulseEnergy.numberOfSa1BunchesActual",
               "pulseEnergy.numberOfSa3BunchesActual")
_XGM_SLOW = ("controlData.slowTrain", "controlData.slowTrainSa1", "controlData.slowTrainSa3")
_WAVELENGTH = "pulseEnergy.wavelengthUsed"


def other_sources(n_samples: int, table_length: int):
    """``(instrument, control, run_only)`` declarations of the DA01 aggregator's sources."""
    uj = karabo_units("J", "joule", "u", "micro")
    instrument = {
        C.XGM_SCS_SOURCE: {k: KeySpec(np.float32, (C.XGM_N_ENTRIES,), attrs=uj) for k in _XGM_KEYS},
        C.BUNCH_PATTERN_SOURCE: {C.BUNCH_PATTERN_KEY: KeySpec(np.uint32, (table_length,))},
        C.DIGITIZER_SOURCE: {C.DIGITIZER_TRACE_KEY: KeySpec(np.int16, (n_samples,), chunk_entries=1),
                             C.DIGITIZER_INTEGRAL_KEY: KeySpec(np.float32, (C.XGM_N_ENTRIES,))},
    }
    xgm_control = {k: KeySpec(np.float32) for k in _XGM_COUNTS}
    xgm_control.update({k: KeySpec(np.float32, attrs=uj) for k in _XGM_SLOW})
    xgm_control[_WAVELENGTH] = KeySpec(np.float32, attrs=karabo_units("m", "meter", "n", "nano"))
    control = {
        C.XGM_SCS_DEVICE: xgm_control,
        C.TIMESERVER_DEVICE: {"bunchPatternTable": KeySpec(np.uint32, (table_length,))},
        C.DELAY_SOURCE: {_DELAY: KeySpec(np.float64, attrs=karabo_units("m", "meter", "m", "milli"))},
        C.PHOTON_ENERGY_SOURCE: {_ENERGY: KeySpec(np.float64, attrs=karabo_units("eV", "electronvolt"))},
    }
    run_only = {C.XGM_SCS_DEVICE: {"classId": XGM_CLASS}, C.TIMESERVER_DEVICE: {"classId": TIMESERVER_CLASS}}
    return instrument, control, run_only


def _xgm_control(n_pulses: int, mean_uj: float, photon_energy: float) -> Dict[str, float]:
    """Per-train XGM settings: pulse counts (SASE3 only), slow train energy, wavelength (nm)."""
    values = dict(zip(_XGM_COUNTS, (n_pulses, 0, n_pulses)))
    slow = mean_uj if n_pulses else 0.0
    values.update(zip(_XGM_SLOW, (slow, 0.0, slow)))
    values[_WAVELENGTH] = C.wavelength_m(photon_energy) * 1e9
    return values


def run_values(delay: float, photon_energy: float, mean_uj: float, n_pulses: int):
    """RUN-section values of the control keys (the first train's)."""
    return {C.DELAY_SOURCE: {_DELAY: delay}, C.PHOTON_ENERGY_SOURCE: {_ENERGY: photon_energy},
            C.XGM_SCS_DEVICE: _xgm_control(n_pulses, mean_uj, photon_energy)}


def write_other_train(writer: AggregatorWriter, cfg: SimulationConfig, rng: np.random.Generator, tid: int, ts: int,
                      lay: TrainLayout, xi: np.ndarray, xgm: np.ndarray, delay: float, energy: float,
                      n_samples: int) -> np.ndarray:
    """Write the train of the DA01 sources; return the planted digitizer integral per frame."""
    xgm_row = np.full(C.XGM_N_ENTRIES, XGM_FILLER, np.float32)
    xgm_row[:len(xi)] = xgm[xi]
    filler_row = np.full(C.XGM_N_ENTRIES, XGM_FILLER, np.float32)
    positions = physics.digitizer_pulse_positions(lay.slots[xi], cfg.first_slot, cfg.digitizer_first_sample,
                                                  cfg.digitizer_samples_per_slot)
    depths = cfg.digitizer_adu_per_uj * xgm[xi]
    trace = physics.digitizer_trace(n_samples, positions, depths, cfg.digitizer_pulse_sigma_samples,
                                    cfg.digitizer_baseline_adu, cfg.digitizer_noise_adu, rng)
    device = np.zeros(C.XGM_N_ENTRIES, np.float32)
    device[:len(xi)] = physics.device_pulse_integrals(trace, positions, cfg.digitizer_pulse_sigma_samples,
                                                      cfg.digitizer_first_sample // 2)
    planted = np.zeros(len(lay))
    planted[xi] = physics.planted_pulse_integral(depths, cfg.digitizer_pulse_sigma_samples)
    table = bunch_pattern_table(lay, cfg.bunch_table_length)
    writer.write_train(tid, ts, {
        C.XGM_SCS_SOURCE: dict(zip(_XGM_KEYS, (xgm_row[None], filler_row[None], xgm_row[None]))),
        C.BUNCH_PATTERN_SOURCE: {C.BUNCH_PATTERN_KEY: table[None]},
        C.DIGITIZER_SOURCE: {C.DIGITIZER_TRACE_KEY: trace[None], C.DIGITIZER_INTEGRAL_KEY: device[None]},
    }, {
        C.XGM_SCS_DEVICE: _xgm_control(len(xi), cfg.xgm_mean_uj, energy),
        C.TIMESERVER_DEVICE: {"bunchPatternTable": table},
        C.DELAY_SOURCE: {_DELAY: float(delay)},
        C.PHOTON_ENERGY_SOURCE: {_ENERGY: float(energy)},
    })
    return planted


def laser_anchors(laser_first: np.ndarray, xray_first: np.ndarray, xray_second: np.ndarray) -> Dict[str, float]:
    """The three PPL anchors (EXtra's ``PumpProbePulses`` arguments) that place the laser.

    From the per-train real first laser slot and first two X-ray slots (-1 where absent) of
    the first train with laser and two X-ray pulses: the laser's first slot
    (``bunch_table_position``), its offset from the first X-ray pulse in slots
    (``bunch_table_offset``) and in X-ray pulse spacings (``pulse_offset``); -1 without laser.
    """
    ok = np.flatnonzero((np.asarray(laser_first) >= 0) & (np.asarray(xray_second) >= 0))
    if len(ok) == 0:
        return {"laser_bunch_table_position": -1, "laser_bunch_table_offset": -1, "laser_pulse_offset": -1.0}
    t = ok[0]
    offset = int(laser_first[t] - xray_first[t])
    return {"laser_bunch_table_position": int(laser_first[t]), "laser_bunch_table_offset": offset,
            "laser_pulse_offset": offset / float(xray_second[t] - xray_first[t])}
