"""BOZ preset: three zone-plate beams on one DSSC module with planted corrections.

An off-axis zone plate splits the beam into the -1st (``n``), 0th (``0``) and +1st
(``p``) orders, side by side on one module. The simulator plants:

- an illumination profile per beam: a smooth top hat (edges rolled off over
  ``edge_px`` pixels) times a broad Gaussian, the same for the three beams;
- a flat field between the orders: the expected photons of ``n`` (``p``) at pixel
  (row ``y``, column ``x`` relative to the beam box centre) are those of ``0`` times the
  plane ``c0 + cx * x + cy * y`` (``ff_n``, ``ff_p``);
- a monotonic non-linear DSSC response: the analog value ``v`` (pedestal + noise +
  photons / ``photons_per_adu``, ADU) becomes ``R(v) = v - nl_amplitude * sin(pi * u)``
  with ``u = (v - nl_knee) / (511 - nl_knee)`` between ``nl_knee`` and 511, and ``R(v) = v``
  elsewhere (an integral non-linearity, zero at both end points of the range);
  raw = ``clip(rint(R(v)), 0, 511)``, so the brightest pulses saturate at 511.
  ``F = R^-1`` at the 512 raw values is the planted lookup table (truth ``boz_nl_lut``);
- pulse-to-pulse intensity: every photon expectation scales with ``xgm / xgm_mean``
  (lognormal, ``xgm_log_sigma``), spanning the dynamic range.

Variants: ``"empty"`` (three empty membranes, transmission 1) and ``"sample"``
(a sample on ``n``: transmission ``exp(-A(E))`` with an absorption edge
``A(E) = edge_pre + edge_step * (1 + erf((E - edge_energy) / edge_width)) / 2`` over
a scan of the mono energy, times the pump factor of pumped frames,
``1 - pump_amplitude * (1 - exp(-(d - pump_t0) / pump_tau))`` for delay ``d > pump_t0``).

The runs are written by the regular run writer (:mod:`.runs`); this module supplies
the per-module frames and the BOZ entries of the truth file (``boz_*``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from scipy.special import erf

from smalldata.constants import DSSC_ADC_MAX, DSSC_MODULE_SHAPE
from smalldata.errors import ConfigError

from .config import SimulationConfig
from .runs import FIRST_FREE_STREAM, RunSimulation, TrainPlan, simulate_run

VARIANTS = ("empty", "sample")
ORDERS = ("n", "0", "p")


@dataclass
class BozSimConfig:
    """Parameters of a simulated BOZ run pair (dark + data).

    Attributes
    ----------
    variant : {"empty", "sample"}
        Three empty membranes (transmission 1), or a sample with an edge on ``n``.
    module : int
        The DSSC module carrying the three beams.
    n_trains, frames_per_train, dark_trains, sequence_trains : int
    pattern : tuple of str
        Frame labels (``pumped*`` frames get the pump laser).
    seed, detector_seed : int
    photons_per_adu : float
        Photons per ADU bin of the DSSC (the ``-g`` gain of ``smd_boz``).
    beam_rows : (y0, y1)
        Rows of the three beam boxes (half-open).
    beam_cols : ((x0, x1), (x0, x1), (x0, x1))
        Columns of the ``n``, ``0`` and ``p`` boxes (same width).
    edge_px : float
        Roll-off width of the top-hat edges, pixels.
    profile_sigma_px : (rows, cols)
        Gaussian envelope of the illumination, pixels.
    peak_photons : float
        Expected photons at the centre of beam ``0`` for a pulse of mean intensity.
    ff_n, ff_p : (c0, cx, cy)
        Planted flat-field planes of ``n/0`` and ``p/0`` (x, y in pixels from the box centre).
    xgm_mean_uj, xgm_log_sigma : float
        Pulse intensity: lognormal XGM.
    nl_knee, nl_amplitude : float
        Response ``R(v) = v - nl_amplitude * sin(pi (v - nl_knee) / (511 - nl_knee))`` between
        ``nl_knee`` and 511 (ADU, ADU).
    energy_steps : tuple of float
        Mono energies of the scan, eV (equal blocks of trains).
    edge_energy, edge_width, edge_pre, edge_step : float
        Absorption edge of the sample on ``n`` (eV, eV, absorbance, absorbance).
    delay_start, delay_stop : float
        Delay scan, mm; ``delay_steps`` positions.
    delay_steps : int
    pump_amplitude, pump_t0, pump_tau : float
        Pump effect on the sample's transmission (pumped frames), t0 and tau in mm.
    """

    variant: str = "empty"
    module: int = 15
    n_trains: int = 40
    frames_per_train: int = 40
    dark_trains: int = 40
    sequence_trains: int = 100
    pattern: Tuple[str, ...] = ("pumped", "unpumped")
    seed: int = 7
    detector_seed: int = 1234
    photons_per_adu: float = 3.0
    beam_rows: Tuple[int, int] = (24, 104)
    beam_cols: Tuple[Tuple[int, int], ...] = ((30, 130), (206, 306), (382, 482))
    edge_px: float = 2.0
    profile_sigma_px: Tuple[float, float] = (45.0, 60.0)
    peak_photons: float = 540.0
    ff_n: Tuple[float, float, float] = (0.8, 1.2e-3, -1.0e-3)
    ff_p: Tuple[float, float, float] = (0.8, -1.2e-3, -1.0e-3)
    xgm_mean_uj: float = 1000.0
    xgm_log_sigma: float = 0.5
    nl_knee: float = 100.0
    nl_amplitude: float = 20.0
    energy_steps: Tuple[float, ...] = (844.0, 848.0, 850.0, 851.0, 852.0, 853.0, 854.0, 856.0, 860.0)
    edge_energy: float = 852.0
    edge_width: float = 1.5
    edge_pre: float = 0.2
    edge_step: float = 0.5
    delay_start: float = 0.0
    delay_stop: float = 6.0
    delay_steps: int = 4
    pump_amplitude: float = 0.15
    pump_t0: float = 1.0
    pump_tau: float = 1.5

    def __post_init__(self):
        self.pattern = tuple(str(p) for p in self.pattern)
        self.beam_rows = tuple(int(v) for v in self.beam_rows)
        self.beam_cols = tuple(tuple(int(v) for v in c) for c in self.beam_cols)
        self.profile_sigma_px = tuple(float(v) for v in self.profile_sigma_px)
        self.ff_n = tuple(float(v) for v in self.ff_n)
        self.ff_p = tuple(float(v) for v in self.ff_p)
        self.energy_steps = tuple(float(v) for v in self.energy_steps)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~smalldata.errors.ConfigError` naming the first bad field."""
        def bad(name, message):
            raise ConfigError(f"BozSimConfig.{name}", message)

        if self.variant not in VARIANTS:
            bad("variant", f"{self.variant!r} is not one of {', '.join(VARIANTS)}")
        if not 0 <= self.module <= 15:
            bad("module", f"{self.module} is not a DSSC module 0..15")
        y0, y1 = self.beam_rows
        if not 0 <= y0 < y1 <= DSSC_MODULE_SHAPE[0]:
            bad("beam_rows", f"{self.beam_rows} is not inside 0..{DSSC_MODULE_SHAPE[0]}")
        widths = {x1 - x0 for x0, x1 in self.beam_cols}
        if len(self.beam_cols) != 3 or len(widths) != 1 or min(widths) < 1 or \
                any(not 0 <= x0 < x1 <= DSSC_MODULE_SHAPE[1] for x0, x1 in self.beam_cols) or \
                not self.beam_cols[0][1] <= self.beam_cols[1][0] <= self.beam_cols[1][1] <= self.beam_cols[2][0]:
            bad("beam_cols", f"{self.beam_cols}: need three boxes of equal width, left to right, inside the module")
        if not 0 <= self.pump_amplitude < 1:
            bad("pump_amplitude", f"{self.pump_amplitude} must be within 0..1 (exclusive)")
        if not 0 <= self.nl_knee < DSSC_ADC_MAX:
            bad("nl_knee", f"{self.nl_knee} must be within 0..{DSSC_ADC_MAX}")
        if self.nl_amplitude < 0 or self.nl_amplitude * np.pi >= DSSC_ADC_MAX - self.nl_knee:
            bad("nl_amplitude", f"{self.nl_amplitude}: the response must stay monotonic (0 <= amplitude < "
                                f"{(DSSC_ADC_MAX - self.nl_knee) / np.pi:.0f} ADU)")
        for name in ("photons_per_adu", "peak_photons", "xgm_mean_uj", "edge_width", "pump_tau"):
            if not getattr(self, name) > 0:
                bad(name, f"{getattr(self, name)} must be > 0")

    # ------------------------------------------------------------------ derived
    def simulation_config(self) -> SimulationConfig:
        """The run-writer configuration: one module, no ring, no speckle, this scan and XGM."""
        energies = self.energy_steps if self.variant == "sample" else None
        return SimulationConfig(
            modules=(self.module,), n_trains=self.n_trains, frames_per_train=self.frames_per_train,
            sequence_trains=self.sequence_trains, dark_trains=self.dark_trains, pattern=self.pattern,
            seed=self.seed, detector_seed=self.detector_seed, gain_adu_per_photon=1.0 / self.photons_per_adu,
            ring_peak_photons=0.0, speckle_mean_photons=0.0, speckle_module=(self.module + 1) % 16,
            photon_energy=self.energy_steps[0], photon_energy_steps=energies,
            xgm_mean_uj=self.xgm_mean_uj, xgm_log_sigma=self.xgm_log_sigma,
            delay_start=self.delay_start, delay_stop=self.delay_stop, delay_steps=self.delay_steps,
            pump_amplitude=self.pump_amplitude, pump_t0=self.pump_t0, pump_tau=self.pump_tau)

    def beam_boxes(self) -> np.ndarray:
        """(3, 4) int64: ``[y0, y1, x0, x1]`` of the n, 0 and p beams."""
        return np.array([[*self.beam_rows, x0, x1] for x0, x1 in self.beam_cols], np.int64)

    def to_json(self) -> str:
        """All parameters as JSON text (stored in the truth file)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# ---------------------------------------------------------------------- planted functions
def response(v: np.ndarray, knee: float, amplitude: float) -> np.ndarray:
    """The planted DSSC response ``R(v)`` (analog ADU -> ADU before rounding)."""
    v = np.asarray(v)
    u = np.clip((v - knee) / (DSSC_ADC_MAX - knee), 0.0, 1.0)
    return v - (amplitude * np.sin(np.pi * u)).astype(v.dtype)


def inverse_response_lut(knee: float, amplitude: float) -> np.ndarray:
    """(512,) float64: ``F = R^-1`` at the raw values 0..511 (the planted lookup table)."""
    grid = np.linspace(0.0, DSSC_ADC_MAX, 64 * DSSC_ADC_MAX + 1)
    return np.interp(np.arange(DSSC_ADC_MAX + 1, dtype=np.float64), response(grid, knee, amplitude), grid)


def plane(params, shape: Tuple[int, int]) -> np.ndarray:
    """``c0 + cx * x + cy * y`` on a (rows, cols) box, x and y in pixels from the box centre."""
    c0, cx, cy = params
    y = np.arange(shape[0]) - (shape[0] - 1) / 2.0
    x = np.arange(shape[1]) - (shape[1] - 1) / 2.0
    return c0 + cx * x[None, :] + cy * y[:, None]


def beam_profile(cfg: BozSimConfig) -> np.ndarray:
    """(h, w) expected photons of beam ``0`` per pulse of mean intensity."""
    y0, y1 = cfg.beam_rows
    x0, x1 = cfg.beam_cols[0]
    h, w = y1 - y0, x1 - x0

    def top_hat(n):
        i = np.arange(n) + 0.5
        d = np.minimum(i, n - i)  # distance to the nearest edge
        return np.clip(np.sin(0.5 * np.pi * np.minimum(d / cfg.edge_px, 1.0)), 0, 1) ** 2

    y = np.arange(h) - (h - 1) / 2.0
    x = np.arange(w) - (w - 1) / 2.0
    sy, sx = cfg.profile_sigma_px
    env = np.exp(-0.5 * (y[:, None] / sy) ** 2 - 0.5 * (x[None, :] / sx) ** 2)
    return cfg.peak_photons * top_hat(h)[:, None] * top_hat(w)[None, :] * env


def absorbance(cfg: BozSimConfig, energy: np.ndarray) -> np.ndarray:
    """Planted absorbance ``A(E)`` of the sample on ``n`` (0 for the empty variant)."""
    energy = np.asarray(energy, dtype=np.float64)
    if cfg.variant != "sample":
        return np.zeros_like(energy)
    return cfg.edge_pre + cfg.edge_step * 0.5 * (1.0 + erf((energy - cfg.edge_energy) / cfg.edge_width))


# ---------------------------------------------------------------------- the run
class BozRunSimulation(RunSimulation):
    """A run of the BOZ preset: the regular writer with the BOZ module frames and truth entries.

    Parameters
    ----------
    boz : BozSimConfig
    cfg, proposal, run, dark, run_dir
        As :class:`~smalldata.simulate.runs.RunSimulation` (``cfg`` from :meth:`BozSimConfig.simulation_config`).
    """

    def __init__(self, boz: BozSimConfig, cfg: SimulationConfig, proposal: int, run: int, dark: bool, run_dir: Path):
        super().__init__(cfg, proposal, run, dark, run_dir)
        self.boz = boz
        profile = beam_profile(boz)
        h, w = profile.shape
        self.lam0 = profile
        self.lam_n = profile * plane(boz.ff_n, (h, w))
        self.lam_p = profile * plane(boz.ff_p, (h, w))
        self.boxes = boz.beam_boxes()
        self.boz_frames = {k: [] for k in ("boz_rel", "boz_transmission_n", "boz_photons_n", "boz_photons_0",
                                           "boz_photons_p", "boz_saturated")}

    def module_frames(self, i: int, train: TrainPlan):
        """The BOZ module's frames: noise, pedestal, the three beams' photons, the planted response."""
        boz, lay, xi, t = self.boz, train.layout, train.xray, train.index
        n = len(lay)
        rng = self.rng(FIRST_FREE_STREAM, t, self.modules[i])
        cells = np.asarray(lay.cells, np.int64)
        v = rng.standard_normal((n,) + DSSC_MODULE_SHAPE, dtype=np.float32)
        v *= self.det.noise[i].reshape(DSSC_MODULE_SHAPE)
        v += self.det.pedestal[i, cells].reshape((n,) + DSSC_MODULE_SHAPE)
        rel = np.zeros(n)
        trans = np.ones(n)
        photons = np.zeros((3, n), np.int64)
        if len(xi):
            rel[xi] = train.intensity[xi]
            if boz.variant == "sample":  # the pump acts on the sample; empty membranes transmit everything
                trans[xi] = np.exp(-absorbance(boz, self.energies[t])) * train.pump[xi]
            dead = self.det.dead[i].reshape(DSSC_MODULE_SHAPE)
            for k, lam in enumerate((self.lam_n, self.lam0, self.lam_p)):
                y0, y1, x0, x1 = self.boxes[k]
                scale = rel[xi] * (trans[xi] if k == 0 else 1.0)
                counts = rng.poisson(lam[None] * scale[:, None, None])
                counts[:, dead[y0:y1, x0:x1]] = 0
                photons[k, xi] = counts.sum(axis=(1, 2))
                v[xi, y0:y1, x0:x1] += counts.astype(np.float32) / np.float32(boz.photons_per_adu)
        raw = np.rint(response(v, boz.nl_knee, boz.nl_amplitude))
        np.clip(raw, 0, DSSC_ADC_MAX, out=raw)
        raw = raw.astype(np.uint16)
        y0, y1 = self.boxes[0, :2]
        sat = (raw[:, y0:y1] >= DSSC_ADC_MAX).any(axis=(1, 2))
        for key, value in zip(self.boz_frames, (rel, trans, photons[0], photons[1], photons[2], sat)):
            self.boz_frames[key].append(value)
        return raw.reshape(n, 1, *DSSC_MODULE_SHAPE), photons.sum(axis=0), np.zeros(n, np.int64)

    def extra_truth(self):
        """The ``boz_*`` datasets and attributes (see the module doc)."""
        boz = self.boz
        datasets = {}
        if not self.dark:
            datasets.update({k: np.concatenate(v) for k, v in self.boz_frames.items()})
            datasets["boz_absorbance_train"] = absorbance(boz, self.energies)
        datasets["boz_rois"] = self.boxes
        datasets["boz_profile_0"] = self.lam0.astype(np.float32)
        datasets["boz_nl_lut"] = inverse_response_lut(boz.nl_knee, boz.nl_amplitude)
        attrs = {
            "boz_variant": boz.variant, "boz_module": boz.module, "boz_photons_per_adu": boz.photons_per_adu,
            "boz_ff_n": np.array(boz.ff_n), "boz_ff_p": np.array(boz.ff_p), "boz_nl_knee": boz.nl_knee,
            "boz_nl_amplitude": boz.nl_amplitude, "boz_peak_photons": boz.peak_photons,
            "boz_edge_energy": boz.edge_energy, "boz_edge_width": boz.edge_width, "boz_edge_pre": boz.edge_pre,
            "boz_edge_step": boz.edge_step if boz.variant == "sample" else 0.0,
            "boz_pump_amplitude": boz.pump_amplitude if boz.variant == "sample" else 0.0,
            "boz_pump_t0": boz.pump_t0, "boz_pump_tau": boz.pump_tau, "boz_config_json": boz.to_json(),
        }
        return datasets, attrs


def simulate_boz_runs(root: os.PathLike, proposal: int, run: int, dark_run: Optional[int] = None,
                      cfg: Optional[BozSimConfig] = None, overwrite: bool = False,
                      threads: Optional[int] = None) -> list:
    """Write a BOZ data run (and, with ``dark_run``, its dark run) with their truth files.

    Parameters
    ----------
    root : path
        Data root (``EXTRA_DATA_DATA_ROOT``).
    proposal, run : int
    dark_run : int, optional
        Also write a dark run (same detector constants, no X-rays) with this number.
    cfg : BozSimConfig, optional
        Default ``BozSimConfig()`` (the empty-membrane variant).
    overwrite : bool
        Replace existing runs.
    threads : int, optional
        Worker threads (the output does not depend on it).

    Returns
    -------
    list of Path
        The run directories written (dark first).
    """
    cfg = cfg or BozSimConfig()
    sim_cfg = cfg.simulation_config()
    factory = partial(BozRunSimulation, cfg)
    written = []
    if dark_run is not None:
        written.append(simulate_run(root, proposal, dark_run, sim_cfg, True, overwrite, threads, simulation=factory))
    written.append(simulate_run(root, proposal, run, sim_cfg, False, overwrite, threads, simulation=factory))
    return written
