"""Simulated per-train camera runs (hRIXS, Viking) in the facility's file format, with planted truth.

Every run writes the camera's images to its INSTRUMENT source (``<device>:daqOutput``, key
``data.image.pixels``, one entry per train), its settings to the CONTROL source ``<device>``
(``preampGain``, ``HighCapacity`` for the Newton), and the monochromator energy to
``SA3_XTD10_MONO/MDL/PHOTON_ENERGY`` ``actualEnergy``, in the aggregator ``DA02``. The truth file
next to the run (:func:`smalldata.simulate.truth_path`) holds what was planted (docs/simulator.md,
"Cameras").

- hRIXS (:func:`simulate_hrixs_run`): ``kind="data"``: single photons (and double hits, two photons
  at one place) on curved lines of known energies, no two hits closer than ``min_distance``
  pixels; ``"elastic"``: one bright curved line (the curvature fit's input); ``"dark"``.
- Viking (:func:`simulate_viking_run`): ``kind="reference"`` (the beam's spectrum),
  ``"sample"`` (through a sample with an absorption edge), ``"mono"`` (a narrow line at the
  monochromator energy), ``"dark"``; each with a polynomial baseline outside the beam's range.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.special import ndtr

from smalldata.cameras.presets import CameraPreset, get_preset

from .truth import run_path, truth_path, write_truth
from .xfel_files import AggregatorWriter, KeySpec

AGGREGATOR = "DA02"
MONO_DEVICE = "SA3_XTD10_MONO/MDL/PHOTON_ENERGY"
#: Key of the monochromator energy on MONO_DEVICE (eV)
MONO_KEY = "actualEnergy"


@dataclass
class CameraSim:
    """Camera and noise parameters shared by a camera's runs (the dark and the data agree).

    Parameters
    ----------
    camera : str
        Preset name (smalldata.cameras.presets).
    shape : (ny, nx), optional
        Image shape; the preset's full shape if None (small shapes keep tests fast).
    n_trains, first_train_id, sequence_trains : int
    pedestal_adu, pedestal_spread_adu, noise_adu : float
        Mean dark level, its spread over pixels, read noise (ADU).
    settings : dict
        CONTROL values of the camera (e.g. ``{"preampGain": 1, "HighCapacity": 0}``).
    seed, detector_seed : int
        Seeds of the run's randomness and of the camera's pedestal (same for the dark and data).
    """

    camera: str = "hrixs"
    shape: Optional[Tuple[int, int]] = None
    n_trains: int = 20
    first_train_id: int = 1_000_000_000
    sequence_trains: int = 10
    pedestal_adu: float = 100.0
    pedestal_spread_adu: float = 4.0
    noise_adu: float = 2.0
    settings: Optional[Dict[str, int]] = None
    seed: int = 1
    detector_seed: int = 77

    @property
    def preset(self) -> CameraPreset:
        """The camera preset with the simulated shape."""
        p = get_preset(self.camera, "camera")
        return p.with_shape(self.shape) if self.shape is not None else p

    def pedestal(self) -> np.ndarray:
        """(ny, nx) float64 planted pedestal (ADU)."""
        rng = np.random.default_rng(self.detector_seed)
        return self.pedestal_adu + self.pedestal_spread_adu * rng.standard_normal(self.preset.shape)


class CameraTrainWriter:
    """The files of one camera, train by train: images at ``<device>:daqOutput``, settings at ``<device>``.

    Parameters
    ----------
    run_dir : path
        Directory the aggregator's files go into (must exist).
    proposal, run : int
    preset : CameraPreset
        Source, key, shape and saturation.
    settings : dict
        CONTROL values of the camera, written every train (and at the run's start).
    sequence_trains : int
        Trains per sequence file.
    mono : bool
        Also write the monochromator energy (``MONO_DEVICE``) per train.
    aggregator : str
        Aggregator name in the file names.
    """

    def __init__(self, run_dir, proposal: int, run: int, preset: CameraPreset, settings: Dict[str, int],
                 sequence_trains: int, mono: bool = False, aggregator: str = AGGREGATOR):
        self.preset = preset
        self.settings = {k: int(v) for k, v in settings.items()}
        self.mono = mono
        control = {preset.device: {k: KeySpec(np.int32) for k in self.settings}}
        if mono:
            control[MONO_DEVICE] = {MONO_KEY: KeySpec(np.float64)}
        instrument = {preset.source: {preset.key: KeySpec(np.uint16, preset.shape, chunk_entries=1),
                                      "data.image.dims": KeySpec(np.uint64, (2,)),
                                      "data.image.bitsPerPixel": KeySpec(np.int32)}}
        self.writer = AggregatorWriter(run_dir, proposal, run, aggregator, sequence_trains, instrument=instrument,
                                       control=control, run_values={preset.device: self.settings},
                                       run_only={preset.device: {"classId": "AndorCamera"}})

    def write_train(self, train_id: int, timestamp_ns: int, image: Optional[np.ndarray],
                    mono_energy: Optional[float] = None) -> None:
        """One train: ``image`` (ny, nx) uint16, or None for a train without an image (count 0)."""
        p = self.preset
        instrument = {} if image is None else {p.source: {
            p.key: image[None], "data.image.dims": np.array([p.shape], np.uint64),
            "data.image.bitsPerPixel": np.array([16], np.int32)}}
        control = {p.device: self.settings} if self.settings else {}
        if self.mono and mono_energy is not None:
            control[MONO_DEVICE] = {MONO_KEY: float(mono_energy)}
        self.writer.write_train(int(train_id), int(timestamp_ns), instrument, control)

    def close(self) -> None:
        """Finish the last sequence file."""
        self.writer.close()


def noisy_image(signal: np.ndarray, pedestal: np.ndarray, noise_adu: float, rng: np.random.Generator,
                saturation: int) -> np.ndarray:
    """Raw image(s): signal + pedestal + Gaussian read noise (ADU), rounded and clipped to uint16."""
    noisy = signal + pedestal + noise_adu * rng.standard_normal(np.shape(signal))
    return np.clip(np.rint(noisy), 0, saturation).astype(np.uint16)


def write_camera_run(root, proposal: int, run: int, sim: CameraSim, signal: np.ndarray,
                     mono_energy: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Add pedestal and noise to a signal (ADU) and write the run's files.

    Parameters
    ----------
    root : path
    proposal, run : int
    sim : CameraSim
    signal : (n_trains, ny, nx) float
        Signal per train (ADU above the pedestal).
    mono_energy : float, optional
        Monochromator energy (eV) written per train.

    Returns
    -------
    train_ids : (n_trains,) uint64
    images : (n_trains, ny, nx) uint16, as written
    """
    preset = sim.preset
    rng = np.random.default_rng(sim.seed + 1000 * run)
    images = noisy_image(signal, sim.pedestal()[None], sim.noise_adu, rng, preset.saturation)
    train_ids = np.arange(sim.n_trains, dtype=np.uint64) + np.uint64(sim.first_train_id)
    run_dir = run_path(root, proposal, run)
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = CameraTrainWriter(run_dir, proposal, run, preset, sim.settings or {}, sim.sequence_trains,
                               mono=mono_energy is not None)
    try:
        for t, tid in enumerate(train_ids):
            writer.write_train(int(tid), 1_700_000_000_000_000_000 + 100_000_000 * t, images[t], mono_energy)
    finally:
        writer.close()
    return train_ids, images


def deposit(image: np.ndarray, y: np.ndarray, x: np.ndarray, amplitude: np.ndarray, sigma: float,
            half: int = 3) -> None:
    """Add Gaussian charge clouds, integrated over each pixel, to an image (in place).

    Parameters
    ----------
    image : (ny, nx) float64
    y, x : (P,) float
        Cloud centres (pixel-index coordinates).
    amplitude : (P,) float
        Total charge of each cloud (ADU).
    sigma : float
        Cloud width (pixels).
    half : int
        Pixels on each side of the centre pixel that receive charge.
    """
    ny, nx = image.shape
    cy, cx = np.rint(y).astype(np.int64), np.rint(x).astype(np.int64)
    offs = np.arange(-half, half + 1)
    rows, cols = cy[:, None] + offs, cx[:, None] + offs
    fy = ndtr((rows + 0.5 - y[:, None]) / sigma) - ndtr((rows - 0.5 - y[:, None]) / sigma)
    fx = ndtr((cols + 0.5 - x[:, None]) / sigma) - ndtr((cols - 0.5 - x[:, None]) / sigma)
    vals = amplitude[:, None, None] * fy[:, :, None] * fx[:, None, :]
    rr = np.broadcast_to(rows[:, :, None], vals.shape)
    cc = np.broadcast_to(cols[:, None, :], vals.shape)
    ok = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
    np.add.at(image, (rr[ok], cc[ok]), vals[ok])


def line_sampler(rng: np.random.Generator, shape: Tuple[int, int], energies: np.ndarray, weights: np.ndarray,
                 row_of, line_sigma_px: float):
    """``draw(k)``: up to k rows (y, x, energy) of photons on spectral lines, for :func:`spaced_points`.

    Each photon's line is chosen by ``weights`` (summing to 1); its row is ``row_of(energy, x)`` plus
    Gaussian natural width ``line_sigma_px``; photons closer than 3 px to the border are dropped.
    """
    ny, nx = shape

    def draw(k: int) -> np.ndarray:
        e = energies[rng.choice(len(energies), size=k, p=weights)]
        x = rng.uniform(2, nx - 3, k)
        y = row_of(e, x) + line_sigma_px * rng.standard_normal(k)
        inside = (y > 2) & (y < ny - 3)
        return np.stack([y, x, e], axis=1)[inside]

    return draw


def spaced_points(n: int, draw, min_distance: float, tries: int = 20) -> np.ndarray:
    """Up to ``n`` rows of ``draw(k) -> (k, 2 + m)`` (y, x, payload...), no two closer than ``min_distance``."""
    kept = []
    for _ in range(tries):
        for row in draw(4 * n):
            if len(kept) >= n:
                return np.array(kept)
            if not kept or np.min(np.sum((np.array(kept)[:, :2] - row[:2]) ** 2, axis=1)) >= min_distance ** 2:
                kept.append(row)
    return np.array(kept)


def simulate_hrixs_run(root, proposal: int, run: int, sim: CameraSim, kind: str = "data",
                       line_energies: Sequence[float] = (929.0, 931.0, 933.5), line_weights: Sequence[float] = (0.3, 0.3, 0.4),
                       curvature: Tuple[float, float] = (0.02, 1.5e-4), energy_slope: float = 0.05,
                       energy_intercept: float = 925.0, line_sigma_px: float = 0.3, photons_per_train: int = 40,
                       double_fraction: float = 0.1, adu_per_photon: float = 150.0, cloud_sigma_px: float = 0.4,
                       min_distance: float = 7.0, elastic_energy: float = 931.0,
                       elastic_adu_per_row: float = 40.0, elastic_sigma_px: float = 1.5) -> Dict[str, np.ndarray]:
    """An hRIXS camera run with planted photons or an elastic line; writes files and truth.

    Lines of energy E lie on ``y = (E - energy_intercept) / energy_slope + c1 * x + c2 * x**2``
    (``curvature = (c1, c2)``). Returns the truth datasets (also written to the truth file).
    """
    if kind not in ("data", "elastic", "dark"):
        raise ValueError(f"kind {kind!r}: use 'data', 'elastic' or 'dark'")
    ny, nx = sim.preset.shape
    c1, c2 = curvature
    rng = np.random.default_rng(sim.seed + 7919 * run)
    signal = np.zeros((sim.n_trains, ny, nx))
    truth: Dict[str, np.ndarray] = {}
    row_of = lambda e, x: (np.asarray(e) - energy_intercept) / energy_slope + (c2 * x + c1) * x  # noqa: E731
    if kind == "data":
        energies = np.asarray(line_energies, np.float64)
        p = np.asarray(line_weights, np.float64) / np.sum(line_weights)
        rec = {k: [] for k in ("train", "y", "x", "photons", "energy")}
        draw = line_sampler(rng, (ny, nx), energies, p, row_of, line_sigma_px)
        for t in range(sim.n_trains):
            ys, xs, es = spaced_points(photons_per_train, draw, min_distance).T
            nph = 1 + (rng.random(len(ys)) < double_fraction)
            deposit(signal[t], ys, xs, nph * adu_per_photon, cloud_sigma_px)
            for k, v in (("train", np.full(len(ys), t)), ("y", ys), ("x", xs), ("photons", nph), ("energy", es)):
                rec[k].append(v)
        truth.update({f"hit_{k}": np.concatenate(v) for k, v in rec.items()})
        truth["line_energies"] = energies
    elif kind == "elastic":
        rows = np.arange(ny)[:, None]
        centre = row_of(elastic_energy, np.arange(nx))[None, :]
        prof = ndtr((rows + 0.5 - centre) / elastic_sigma_px) - ndtr((rows - 0.5 - centre) / elastic_sigma_px)
        signal += elastic_adu_per_row * prof[None] * rng.poisson(10, (sim.n_trains, 1, 1)) / 10.0
        truth["elastic_energy"] = np.float64(elastic_energy)
        truth["elastic_y0"] = np.float64(row_of(elastic_energy, 0.0))
    train_ids, _ = write_camera_run(root, proposal, run, sim, signal)
    truth.update({"train_ids": train_ids, "pedestal": sim.pedestal(), "noise": np.float64(sim.noise_adu),
                  "curvature": np.array([c1, c2]), "energy_slope": np.float64(energy_slope),
                  "energy_intercept": np.float64(energy_intercept), "adu_per_photon": np.float64(adu_per_photon),
                  "cloud_sigma_px": np.float64(cloud_sigma_px), "min_distance": np.float64(min_distance)})
    write_truth(truth_path(root, proposal, run), truth,
                {"run_type": f"hrixs_{kind}", "camera": sim.camera, "source": sim.preset.source, "key": sim.preset.key})
    return truth


def simulate_viking_run(root, proposal: int, run: int, sim: CameraSim, kind: str = "reference",
                        calibration: Tuple[float, float, float] = (860.0, 0.08, 1.2e-5), edge_energy: float = 880.0,
                        edge_width: float = 0.6, edge_step: float = 0.8, pre_absorbance: float = 0.2,
                        thickness: float = 1.0, mono_energy: float = 880.0, beam_pe: float = 4.0e5,
                        beam_centre_px: Optional[float] = None, beam_sigma_px: Optional[float] = None,
                        mono_sigma_px: float = 2.5, baseline_pe: Tuple[float, float, float] = (300.0, -150.0, 400.0),
                        band_rows: Optional[Tuple[int, int]] = None, intensity_jitter: float = 0.1) -> Dict[str, np.ndarray]:
    """A Viking (Newton camera) run; writes files and truth.

    ``calibration`` = (c0, c1, c2): energy of column p is ``c0 + c1 p + c2 p**2`` (eV). The beam's
    summed spectrum (photoelectrons per column) is a Gaussian of ``beam_pe`` in total; the sample
    multiplies it by ``exp(-absorbance)``, absorbance ``thickness * (pre + step * ndtr((E - edge) / width))``.
    ``baseline_pe`` are the coefficients, in t = p / nx, of the baseline added to the summed spectrum.
    """
    if kind not in ("reference", "sample", "mono", "dark"):
        raise ValueError(f"kind {kind!r}: use 'reference', 'sample', 'mono' or 'dark'")
    from smalldata.spectro.viking import photoelectrons_per_count

    settings = sim.settings or {"preampGain": 1, "HighCapacity": 0}
    sim = replace(sim, settings=settings)
    pe_per_count = photoelectrons_per_count(settings["preampGain"], settings["HighCapacity"])
    ny, nx = sim.preset.shape
    r0, r1 = band_rows or (ny // 4, 3 * ny // 4)
    p = np.arange(nx, dtype=np.float64)
    energy = np.polynomial.polynomial.polyval(p, calibration)
    centre = nx / 2 if beam_centre_px is None else beam_centre_px
    sigma = nx / 12 if beam_sigma_px is None else beam_sigma_px
    rng = np.random.default_rng(sim.seed + 104729 * run)
    if kind == "mono":
        from smalldata.spectro.calibration import EnergyCalibration

        centre, sigma = float(EnergyCalibration(calibration, (0.0, nx - 1.0)).pixel(mono_energy)), mono_sigma_px
    shape = np.exp(-0.5 * ((p - centre) / sigma) ** 2)
    beam = beam_pe * shape / shape.sum()
    absorbance = thickness * (pre_absorbance + edge_step * ndtr((energy - edge_energy) / edge_width))
    spec = beam * (np.exp(-absorbance) if kind == "sample" else 1.0)
    baseline = np.polynomial.polynomial.polyval(p / nx, baseline_pe)
    factors = 1.0 + intensity_jitter * rng.standard_normal(sim.n_trains)
    summed = np.zeros((sim.n_trains, nx)) if kind == "dark" else factors[:, None] * spec[None] + baseline[None]
    signal = np.zeros((sim.n_trains, ny, nx))
    signal[:, r0:r1, :] = (summed / (r1 - r0) / pe_per_count)[:, None, :]
    train_ids, _ = write_camera_run(root, proposal, run, sim, signal, mono_energy if kind == "mono" else None)
    sig_lo, sig_hi = centre - 5 * sigma, centre + 5 * sigma
    truth = {"train_ids": train_ids, "pedestal": sim.pedestal(), "noise": np.float64(sim.noise_adu),
             "calibration": np.array(calibration), "energy": energy, "beam_pe": beam, "baseline_pe": baseline,
             "baseline_coefficients": np.array(baseline_pe), "train_factor": factors,
             "absorbance": absorbance, "edge_energy": np.float64(edge_energy), "edge_step": np.float64(edge_step * thickness),
             "signal_range_px": np.array([sig_lo, sig_hi]), "band_rows": np.array([r0, r1]),
             "pe_per_count": np.float64(pe_per_count), "mono_energy": np.float64(mono_energy),
             "peak_px": np.float64(centre)}
    write_truth(truth_path(root, proposal, run), truth,
                {"run_type": f"viking_{kind}", "camera": sim.camera, "source": sim.preset.source, "key": sim.preset.key})
    return truth


#: smd_simulate presets of camera runs: name -> (camera, simulator, kind)
CAMERA_RUN_PRESETS = {
    "hrixs": ("hrixs", "hrixs", "data"), "hrixs-elastic": ("hrixs", "hrixs", "elastic"),
    "viking-reference": ("newton", "viking", "reference"), "viking-sample": ("newton", "viking", "sample"),
    "viking-mono": ("newton", "viking", "mono"),
}


def simulate_camera_preset(root, proposal: int, run: int, preset: str, dark_run: Optional[int] = None,
                           n_trains: int = 10, seed: int = 1, photon_energy: Optional[float] = None,
                           overwrite: bool = False) -> Dict[int, str]:
    """A camera run of a named preset (and its dark run), full camera size; for ``smd_simulate``.

    Parameters
    ----------
    root, proposal, run
    preset : str
        A key of :data:`CAMERA_RUN_PRESETS`.
    dark_run : int, optional
        Also write a dark run of the same camera with this number.
    n_trains, seed : int
    photon_energy : float, optional
        The monochromator energy of ``viking-mono`` (eV; 880 if None).
    overwrite : bool
        Replace existing runs; without it an existing run is refused in one line.

    Returns
    -------
    dict run -> kind written
    """
    from smalldata.errors import SmallDataError

    camera, which, kind = CAMERA_RUN_PRESETS[preset]
    runs = {run: kind} if dark_run is None else {dark_run: "dark", run: kind}
    for r in runs:
        if run_path(root, proposal, r).exists() and not overwrite:
            raise SmallDataError(f"run {r} already exists under {root}; give another run number or --overwrite")
    for r, k in runs.items():
        path = run_path(root, proposal, r)
        for old in path.glob("RAW-*.h5") if path.exists() else ():
            old.unlink()
        settings = {"preampGain": 1, "HighCapacity": 0} if camera == "newton" else None
        sim = CameraSim(camera=camera, n_trains=n_trains, seed=seed, settings=settings)
        if which == "hrixs":
            simulate_hrixs_run(root, proposal, r, sim, k, line_energies=(927.0, 928.5, 930.0), elastic_energy=928.5,
                               curvature=(0.002, 2e-6), energy_slope=0.01, energy_intercept=920.0,
                               photons_per_train=400)
        else:
            extra = {"mono_energy": photon_energy} if photon_energy is not None else {}
            simulate_viking_run(root, proposal, r, sim, k, **extra)
    return runs
