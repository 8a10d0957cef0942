"""The simulator's parameters: :class:`SimulationConfig` and its presets.

Every field has a default; the presets :meth:`SimulationConfig.small` (two modules,
a few MB, for tests) and :meth:`SimulationConfig.demo` (the full detector, for the
demo) replace a few of them. Units: metres, eV, seconds, m^-1 for momentum transfer,
ADU for detector values, uJ for the XGM and mm for the delay stage (as the devices).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from smalldata.constants import BUNCH_PATTERN_LENGTH, DSSC_DEFAULT_QUAD_POSITIONS, DSSC_MODULE_SHAPE, DSSC_N_MODULES
from smalldata.errors import ConfigError, SmallDataError

#: Proposal cycle used in simulated run paths.
CYCLE = "202601"
#: Most memory cells a DSSC train can use.
DSSC_MAX_CELLS = 800


@dataclass
class SimulationConfig:
    """Everything that defines a simulated run pair (dark + data).

    Run layout
    ----------
    modules : tuple of int
        DSSC modules to write (any subset of 0..15; stored ascending).
    n_trains : int
        Trains in a data run.
    first_train_id : int
        Train id of the first train of every simulated run.
    frames_per_train : int
        Detector frames per train (frame f has memory cell f).
    frames_per_train_change : (train_index, count) or None
        From data-run train ``train_index`` on, ``count`` frames per train.
    module_missing_trains : dict {module: train indices}
        Data-run trains (0-based indices) a module's files lack (count 0 in INDEX).
    sequence_trains : int
        Trains per sequence file (a new ``-S{seq:05d}`` file after that many).
    dark_trains : int
        Trains in a dark run.
    dark_frames_per_train : int or None
        Frames per train of a dark run; None = the most frames a data-run train has.
    pattern : tuple of str
        Repeating frame labels. Labels containing ``"dark"`` get no X-rays; labels
        starting with ``"pumped"`` get the pump laser (unless ``laser_pulses`` is set).
    first_slot, slot_spacing : int
        Frame f sits at bunch-pattern slot ``first_slot + f * slot_spacing`` (its pulseId).
    laser_pulses : (first, period) or None
        The pump laser's real timing in X-ray pulses: its first pulse on X-ray pulse
        ``first`` (0-based) of the train, then every ``period`` X-ray pulse spacings.
        None: the laser is on the frames whose label starts with ``"pumped"``. Either way
        the table's PPL bits start at slot 0 (the facility's convention).
    bunch_table_length : int
        Slots (words) per bunch-pattern table row (2700 in the recorded data so far).

    Seeds
    -----
    seed : int
        Per-run randomness (photons, noise, XGM, speckle, digitizer), mixed with the run number.
    detector_seed : int
        Detector constants (pedestal, noise, bad pixels), shared by dark and data runs.

    Detector (ADU)
    --------------
    gain_adu_per_photon, pedestal_mean_adu, pedestal_pixel_spread_adu,
    pedestal_cell_spread_adu (per module and cell, common to its pixels),
    pedestal_cell_pixel_spread_adu (per module, cell and pixel), noise_min_adu,
    noise_max_adu (uniform per pixel, Gaussian sigma), dead_fraction, hot_fraction,
    noisy_fraction, hot_offset_adu, noisy_factor.

    Geometry and beam
    -----------------
    geometry_file : str or None
        extra-geom DSSC geometry file; None = the one shipped with smalldata.
    quadrant_positions : 4 x (x, y) metres
    distance : float
        Sample-detector distance, m.
    beam_center : (x, y)
        Beam position in the detector plane, m (extra-geom coordinates).
    photon_energy : float
        eV; ``photon_energy_steps`` (eV values, equal train blocks) replaces it per train.
    xgm_mean_uj, xgm_log_sigma : float
        XGM pulse energy: lognormal with mean ``xgm_mean_uj`` (uJ) and log-sigma.

    Planted scattering
    ------------------
    ring_q, ring_sigma_q : float
        Ring position and Gaussian width in momentum transfer, m^-1.
    ring_peak_photons : float
        Expected photons per pixel at the ring's peak, per pulse of mean XGM.
    speckle_module, speckle_roi : int, (y0, y1, x0, x1)
        Module and pixel region (module row/column, half-open) of the speckle pattern.
        No speckle is planted if the module is not simulated.
    speckle_mean_photons, speckle_contrast, speckle_size_px : float
        Mean photons per pixel (mean XGM), contrast beta, Gaussian size sigma in pixels.

    Pump-probe
    ----------
    delay_start, delay_stop : float
        First and last delay-stage position, mm.
    delay_steps : int
        Positions of the scan; equal blocks of trains.
    pump_amplitude, pump_t0, pump_tau : float
        Ring intensity of pumped frames x ``1 - A (1 - exp(-(d - t0) / tau))`` for d > t0 (mm).

    Digitizer (ADU of the ADC, samples)
    -----------------------------------
    digitizer_first_sample, digitizer_samples_per_slot : int
        Pulse of slot s at sample ``first_sample + (s - first_slot) * samples_per_slot``.
    digitizer_n_samples : int or None
        Trace length; None = enough for the longest train plus ``first_sample``.
    digitizer_baseline_adu, digitizer_noise_adu : float
    digitizer_adu_per_uj : float
        Depth of a pulse (ADU below the baseline) per uJ of XGM.
    digitizer_pulse_sigma_samples : float
        Gaussian width of a pulse, samples.
    """

    # run layout
    modules: Tuple[int, ...] = tuple(range(DSSC_N_MODULES))
    n_trains: int = 60
    first_train_id: int = 1_000_000_000
    frames_per_train: int = 20
    frames_per_train_change: Optional[Tuple[int, int]] = None
    module_missing_trains: Dict[int, Tuple[int, ...]] = field(default_factory=dict)
    sequence_trains: int = 30
    dark_trains: int = 50
    dark_frames_per_train: Optional[int] = None
    pattern: Tuple[str, ...] = ("pumped", "unpumped")
    first_slot: int = 200
    slot_spacing: int = 24
    laser_pulses: Optional[Tuple[int, int]] = None
    bunch_table_length: int = BUNCH_PATTERN_LENGTH
    # seeds
    seed: int = 1
    detector_seed: int = 1234
    # detector
    gain_adu_per_photon: float = 15.0
    pedestal_mean_adu: float = 40.0
    pedestal_pixel_spread_adu: float = 5.0
    pedestal_cell_spread_adu: float = 1.0
    pedestal_cell_pixel_spread_adu: float = 0.5
    noise_min_adu: float = 1.0
    noise_max_adu: float = 3.0
    dead_fraction: float = 1e-3
    hot_fraction: float = 1e-3
    noisy_fraction: float = 1e-3
    hot_offset_adu: float = 150.0
    noisy_factor: float = 8.0
    # geometry and beam
    geometry_file: Optional[str] = None
    quadrant_positions: Tuple[Tuple[float, float], ...] = DSSC_DEFAULT_QUAD_POSITIONS
    distance: float = 5.0
    beam_center: Tuple[float, float] = (0.4e-3, -0.3e-3)
    photon_energy: float = 860.0
    photon_energy_steps: Optional[Tuple[float, ...]] = None
    xgm_mean_uj: float = 1000.0
    xgm_log_sigma: float = 0.25
    # planted scattering
    ring_q: float = 1.0e8
    ring_sigma_q: float = 4.0e6
    ring_peak_photons: float = 0.05
    speckle_module: int = 3
    speckle_roi: Tuple[int, int, int, int] = (64, 128, 384, 512)
    speckle_mean_photons: float = 0.5
    speckle_contrast: float = 0.3
    speckle_size_px: float = 2.0
    # pump-probe
    delay_start: float = 0.0
    delay_stop: float = 5.0
    delay_steps: int = 6
    pump_amplitude: float = 0.4
    pump_t0: float = 1.0
    pump_tau: float = 1.5
    # digitizer
    digitizer_first_sample: int = 1000
    digitizer_samples_per_slot: int = 440
    digitizer_n_samples: Optional[int] = None
    digitizer_baseline_adu: float = 100.0
    digitizer_noise_adu: float = 3.0
    digitizer_adu_per_uj: float = 1.0
    digitizer_pulse_sigma_samples: float = 5.0

    def __post_init__(self):
        self.modules = tuple(sorted(int(m) for m in self.modules))
        self.pattern = tuple(str(p) for p in self.pattern)
        self.module_missing_trains = {int(m): tuple(sorted(int(t) for t in ts))
                                      for m, ts in dict(self.module_missing_trains).items()}
        if self.frames_per_train_change is not None:
            self.frames_per_train_change = tuple(int(v) for v in self.frames_per_train_change)
        if self.photon_energy_steps is not None:
            self.photon_energy_steps = tuple(float(e) for e in self.photon_energy_steps)
        if self.laser_pulses is not None:
            self.laser_pulses = tuple(int(v) for v in self.laser_pulses)
        self.speckle_roi = tuple(int(v) for v in self.speckle_roi)
        self.beam_center = tuple(float(v) for v in self.beam_center)
        self.quadrant_positions = tuple(tuple(float(v) for v in q) for q in self.quadrant_positions)
        self.validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def small(cls, **changes) -> "SimulationConfig":
        """Two modules (2, 3), 24 trains of 4 frames, 10 trains per sequence file; ~30 MB per data run."""
        base = dict(modules=(2, 3), n_trains=24, frames_per_train=4, sequence_trains=10,
                    dark_trains=100, delay_steps=4, speckle_module=3)
        base.update(changes)
        return cls(**base)

    @classmethod
    def demo(cls, **changes) -> "SimulationConfig":
        """All 16 modules, 60 trains of 20 frames, a dark of 100 trains (100 frames per cell)."""
        base = dict(modules=tuple(range(DSSC_N_MODULES)), n_trains=60, frames_per_train=20,
                    sequence_trains=30, dark_trains=100, delay_steps=6)
        base.update(changes)
        return cls(**base)

    @classmethod
    def pump_probe(cls, laser_first: int = 0, laser_period: int = 1, **changes) -> "SimulationConfig":
        """A pump-probe run: module 2, 12 trains of 8 X-ray frames (every 24 slots), the pump
        laser's first pulse on X-ray pulse ``laser_first`` (0-based), then one every
        ``laser_period`` X-ray pulses (``laser_period=2``: the laser at half the X-ray rate)."""
        base = dict(modules=(2,), n_trains=12, frames_per_train=8, sequence_trains=12, dark_trains=20,
                    pattern=("image",), laser_pulses=(laser_first, laser_period), delay_steps=3,
                    delay_start=3.0, delay_stop=6.0)
        base.update(changes)
        return cls(**base)

    # ------------------------------------------------------------------ derived
    def train_frame_counts(self) -> "list[int]":
        """Frames per train of a data run, one entry per train."""
        counts = [self.frames_per_train] * self.n_trains
        if self.frames_per_train_change is not None:
            start, new = self.frames_per_train_change
            counts[start:] = [new] * (self.n_trains - start)
        return counts

    @property
    def max_frames_per_train(self) -> int:
        """The most frames a data-run train has."""
        return max(self.train_frame_counts())

    @property
    def dark_frames(self) -> int:
        """Frames per train of a dark run."""
        return self.dark_frames_per_train or self.max_frames_per_train

    def n_cells(self, dark: bool) -> int:
        """Memory cells used by a dark (``dark=True``) or data run."""
        return self.dark_frames if dark else self.max_frames_per_train

    def to_json(self) -> str:
        """The configuration as JSON text (stored in the truth file)."""
        d = dataclasses.asdict(self)
        d["module_missing_trains"] = {str(k): list(v) for k, v in self.module_missing_trains.items()}
        return json.dumps(d, sort_keys=True)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`~smalldata.errors.ConfigError` naming the first bad field."""
        def bad(name: str, message: str):
            raise ConfigError(f"SimulationConfig.{name}", message)

        if not self.modules or any(m < 0 or m >= DSSC_N_MODULES for m in self.modules) \
                or len(set(self.modules)) != len(self.modules):
            bad("modules", f"{self.modules} is not a set of distinct module numbers 0..15")
        for name in ("n_trains", "frames_per_train", "sequence_trains", "dark_trains", "delay_steps"):
            if int(getattr(self, name)) < 1:
                bad(name, f"{getattr(self, name)} must be at least 1")
        if self.first_train_id < 1:
            bad("first_train_id", f"{self.first_train_id} must be positive")
        if self.frames_per_train_change is not None:
            if len(self.frames_per_train_change) != 2:
                bad("frames_per_train_change", "give (train_index, new_frames_per_train)")
            start, new = self.frames_per_train_change
            if not 0 <= start < self.n_trains or new < 1:
                bad("frames_per_train_change",
                    f"{self.frames_per_train_change}: need 0 <= train_index < n_trains={self.n_trains} and count >= 1")
        for m, trains in self.module_missing_trains.items():
            if m not in self.modules:
                bad("module_missing_trains", f"module {m} is not among the simulated modules {self.modules}")
            if any(t < 0 or t >= self.n_trains for t in trains):
                bad("module_missing_trains", f"module {m}: train indices {trains} outside 0..{self.n_trains - 1}")
        if self.dark_frames_per_train is not None and self.dark_frames_per_train < 1:
            bad("dark_frames_per_train", f"{self.dark_frames_per_train} must be at least 1 or None")
        if not self.pattern or any(not p for p in self.pattern):
            bad("pattern", f"{self.pattern}: give at least one non-empty frame label")
        most = max(self.max_frames_per_train, self.dark_frames)
        if most > DSSC_MAX_CELLS:
            bad("frames_per_train", f"{most} frames per train exceed the {DSSC_MAX_CELLS} DSSC memory cells")
        if self.bunch_table_length < 1:
            bad("bunch_table_length", f"{self.bunch_table_length} must be at least 1")
        if self.first_slot < 0 or self.slot_spacing < 1 \
                or self.first_slot + (most - 1) * self.slot_spacing >= self.bunch_table_length:
            bad("slot_spacing", f"frames at slots {self.first_slot} + f * {self.slot_spacing} for {most} frames "
                f"do not fit the {self.bunch_table_length} bunch-pattern slots")
        if self.laser_pulses is not None and (len(self.laser_pulses) != 2 or self.laser_pulses[0] < 0
                                              or self.laser_pulses[1] < 1):
            bad("laser_pulses", f"{self.laser_pulses}: give (first X-ray pulse >= 0, period in X-ray pulses >= 1)")
        positive = ("gain_adu_per_photon", "distance", "photon_energy", "xgm_mean_uj", "ring_q", "ring_sigma_q",
                    "noise_min_adu", "pump_tau", "digitizer_pulse_sigma_samples", "noisy_factor")
        for name in positive:
            if not float(getattr(self, name)) > 0:
                bad(name, f"{getattr(self, name)} must be > 0")
        for name in ("ring_peak_photons", "speckle_mean_photons", "xgm_log_sigma", "speckle_size_px",
                     "digitizer_noise_adu", "pedestal_pixel_spread_adu", "pedestal_cell_spread_adu",
                     "pedestal_cell_pixel_spread_adu", "hot_offset_adu", "digitizer_adu_per_uj"):
            if float(getattr(self, name)) < 0:
                bad(name, f"{getattr(self, name)} must be >= 0")
        if self.noise_max_adu < self.noise_min_adu:
            bad("noise_max_adu", f"{self.noise_max_adu} is below noise_min_adu={self.noise_min_adu}")
        if not 0 <= self.speckle_contrast <= 1:
            bad("speckle_contrast", f"{self.speckle_contrast} must be within 0..1")
        if not 0 <= self.pump_amplitude <= 1:
            bad("pump_amplitude", f"{self.pump_amplitude} must be within 0..1")
        if self.dead_fraction + self.hot_fraction + self.noisy_fraction > 0.5 or \
                min(self.dead_fraction, self.hot_fraction, self.noisy_fraction) < 0:
            bad("dead_fraction", "bad-pixel fractions must be >= 0 and sum to at most 0.5")
        y0, y1, x0, x1 = self.speckle_roi if len(self.speckle_roi) == 4 else (0, 0, 0, 0)
        if not (0 <= y0 < y1 <= DSSC_MODULE_SHAPE[0] and 0 <= x0 < x1 <= DSSC_MODULE_SHAPE[1]):
            bad("speckle_roi", f"{self.speckle_roi} is not (y0, y1, x0, x1) within a 128 x 512 module")
        if not 0 <= self.speckle_module < DSSC_N_MODULES:
            bad("speckle_module", f"{self.speckle_module} is not a module number 0..15")
        if self.photon_energy_steps is not None and (
                not self.photon_energy_steps or min(self.photon_energy_steps) <= 0):
            bad("photon_energy_steps", f"{self.photon_energy_steps}: give positive energies in eV, or None")
        if len(self.beam_center) != 2:
            bad("beam_center", f"{self.beam_center} is not (x, y) in metres")
        if len(self.quadrant_positions) != 4 or any(len(q) != 2 for q in self.quadrant_positions):
            bad("quadrant_positions", "give 4 pairs of (x, y) in metres")
        if self.digitizer_first_sample < 20 * self.digitizer_pulse_sigma_samples:
            bad("digitizer_first_sample", f"{self.digitizer_first_sample} leaves no baseline before the first "
                f"pulse; use at least 20 x digitizer_pulse_sigma_samples")
        if self.digitizer_samples_per_slot < 1:
            bad("digitizer_samples_per_slot", f"{self.digitizer_samples_per_slot} must be at least 1")
        if self.digitizer_n_samples is not None and self.digitizer_n_samples < self.digitizer_trace_length():
            bad("digitizer_n_samples", f"{self.digitizer_n_samples} is shorter than the "
                f"{self.digitizer_trace_length()} samples the longest train needs (or None)")

    def digitizer_trace_length(self) -> int:
        """Samples per digitizer trace (given, or long enough for the longest train)."""
        if self.digitizer_n_samples is not None:
            return int(self.digitizer_n_samples)
        most = max(self.max_frames_per_train, self.dark_frames)
        return int(2 * self.digitizer_first_sample + (most - 1) * self.slot_spacing * self.digitizer_samples_per_slot)


def parse_int_list(text: str, what: str) -> Sequence[int]:
    """``"0,3,15"`` or ``"0-3,15"`` -> list of ints; raise SmallDataError naming ``what``."""
    values = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                values.extend(range(int(lo), int(hi) + 1))
            elif part:
                values.append(int(part))
    except ValueError:
        raise SmallDataError(f"{what} {text!r} is not a comma-separated list of integers "
                             f"(e.g. 0,3,15 or 0-3)") from None
    if not values:
        raise SmallDataError(f"{what} {text!r} names no values")
    return values
