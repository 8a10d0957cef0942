"""A per-train camera written into a simulated DSSC run (a mixed run), with planted per-train truth.

Next to the DSSC module files (and the ``DA01`` sources) of a run, the camera's INSTRUMENT source
``<device>:daqOutput`` (``data.image.pixels``, one entry per train) and its CONTROL source
``<device>`` go to their own aggregator ``DA02`` (:class:`~smalldata.simulate.cameras.CameraTrainWriter`),
for the trains of the DSSC run. The DSSC part of the run is the same as without the camera (the
camera draws from its own random streams).

- Per-train intensity: every train's camera signal is scaled by the train's planted X-ray intensity,
  the mean pulse energy of its X-ray pulses over ``xgm_mean_uj`` (the XGM the run records), so the
  camera correlates with the XGM at the right train only.
- ``newton``: a Viking spectrum (photoelectrons per column ``factor x beam + baseline``, spread over
  the middle half of the rows, counts through the settings' photoelectrons per count);
  ``hrixs``: single and double photons on three curved lines, ``Poisson(photons_per_train x factor)``
  hits per train; ``fastccd``: single photons anywhere on the sensor, the same count law.
- Missing images: some trains (``MixedCamera.missing_trains``) have no image (count 0).
- Train ids: the image of true train T is recorded at train ``T - train_id_offset`` (the preset's;
  the Newton's is -1, so its image is recorded one train later). A true train whose recorded id lies
  beyond the run has no image, and a recorded train whose true train lies before the run stays empty.
- Dark runs: pedestal and noise only; the pedestal comes from ``detector_seed`` like the DSSC's, so
  the dark and the data of a camera agree.

The truth (datasets ``camera_*``, attributes ``camera*``) is given per true train id; see
docs/simulator.md, "Cameras in a DSSC run".
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from smalldata.cameras.presets import CameraPreset, get_preset
from smalldata.errors import SmallDataError

from .cameras import CameraSim, CameraTrainWriter, deposit, line_sampler, noisy_image, spaced_points
from .config import SimulationConfig
from .runs import EPOCH_NS, FIRST_FREE_STREAM, TRAIN_PERIOD_NS, RunSimulation, simulate_run

#: Cameras that can be written into a DSSC run.
MIXED_CAMERAS = ("newton", "hrixs", "fastccd")
_S_CAMERA_SIGNAL, _S_CAMERA_NOISE = FIRST_FREE_STREAM, FIRST_FREE_STREAM + 1
#: Viking reference spectrum: energy calibration (c0, c1, c2) and baseline coefficients (in p / nx).
VIKING_CALIBRATION = (860.0, 0.08, 1.2e-5)
VIKING_BASELINE_PE = (300.0, -150.0, 400.0)
#: hRIXS lines (eV) and their weights.
HRIXS_LINES = (929.0, 931.0, 933.5)
HRIXS_WEIGHTS = (0.3, 0.3, 0.4)


@dataclass(frozen=True)
class MixedCamera:
    """The camera written into a DSSC run and what it sees.

    Parameters
    ----------
    camera : str
        One of :data:`MIXED_CAMERAS` (a camera preset).
    shape : (ny, nx), optional
        Image shape; the preset's full shape if None.
    missing_trains : tuple of int, optional
        Data-run train indices (true trains) without an image; None: two of them, at a third and
        two thirds of the run (none in runs shorter than 6 trains). Dark runs have none.
    noise_adu, pedestal_adu, pedestal_spread_adu : float
        Read noise, mean dark level and its spread over pixels (ADU).
    settings : dict, optional
        CONTROL settings; the Newton's default ``{"preampGain": 1, "HighCapacity": 0}``.
    photons_per_train : float
        hRIXS and FastCCD: mean photon hits per train at intensity factor 1.
    double_fraction : float
        hRIXS and FastCCD: fraction of hits with two photons at one place.
    adu_per_photon, cloud_sigma_px, min_distance : float
        Charge of a photon (ADU), its cloud's width (px), the least distance between hits (px).
    beam_pe : float
        Newton: photoelectrons of the beam's spectrum per train at intensity factor 1.
    """

    camera: str = "newton"
    shape: Optional[Tuple[int, int]] = None
    missing_trains: Optional[Tuple[int, ...]] = None
    noise_adu: float = 2.0
    pedestal_adu: float = 100.0
    pedestal_spread_adu: float = 4.0
    settings: Optional[Dict[str, int]] = field(default=None)
    photons_per_train: float = 20.0
    double_fraction: float = 0.1
    adu_per_photon: float = 150.0
    cloud_sigma_px: float = 0.4
    min_distance: float = 7.0
    beam_pe: float = 4.0e5

    @property
    def preset(self) -> CameraPreset:
        """The camera preset with the simulated shape; a one-line SmallDataError for another camera."""
        if self.camera not in MIXED_CAMERAS:
            raise SmallDataError(f"camera {self.camera!r} cannot be written into a DSSC run; use one of "
                                 f"{', '.join(MIXED_CAMERAS)} (--camera)")
        p = get_preset(self.camera)
        return p.with_shape(self.shape) if self.shape is not None else p

    def validate(self) -> None:
        """One-line SmallDataError for a shape too small for the planted signal or a train-id offset > 0."""
        p = self.preset
        if min(p.shape) < 16:
            raise SmallDataError(f"camera shape {p.shape[0]} x {p.shape[1]} pixels is too small for the planted "
                                 "signal; give at least 16 x 16 (--camera-shape)")
        if p.train_id_offset > 0:
            raise SmallDataError(f"train-id offset {p.train_id_offset} of camera {p.name}: the simulator writes "
                                 "offsets <= 0 only")

    def camera_sim(self, cfg: SimulationConfig) -> CameraSim:
        """The :class:`CameraSim` of this camera in a run of ``cfg`` (seeds from the DSSC's)."""
        settings = self.settings
        if settings is None and self.camera == "newton":
            settings = {"preampGain": 1, "HighCapacity": 0}
        return CameraSim(camera=self.camera, shape=self.preset.shape, n_trains=cfg.n_trains,
                         first_train_id=cfg.first_train_id, sequence_trains=cfg.sequence_trains,
                         pedestal_adu=self.pedestal_adu, pedestal_spread_adu=self.pedestal_spread_adu,
                         noise_adu=self.noise_adu, settings=settings, seed=cfg.seed, detector_seed=cfg.detector_seed)

    def planted_missing(self, n_trains: int) -> Tuple[int, ...]:
        """The data-run train indices planted without an image (checked against ``n_trains``)."""
        if self.missing_trains is None:
            return (n_trains // 3, 2 * n_trains // 3) if n_trains >= 6 else ()
        bad = [t for t in self.missing_trains if not 0 <= t < n_trains]
        if bad:
            raise SmallDataError(f"MixedCamera.missing_trains: train indices {bad} are outside the run's "
                                 f"{n_trains} trains; give indices 0..{n_trains - 1}")
        return tuple(sorted(set(int(t) for t in self.missing_trains)))


class MixedRunSimulation(RunSimulation):
    """A DSSC run (the regular writer) with a per-train camera in its own aggregator."""

    def __init__(self, camera: MixedCamera, cfg: SimulationConfig, proposal: int, run: int, dark: bool,
                 run_dir: Path):
        super().__init__(cfg, proposal, run, dark, run_dir)
        camera.validate()
        self.camera = camera
        self.sim = camera.camera_sim(cfg)
        self.preset = preset = self.sim.preset
        self.offset = int(preset.train_id_offset)
        self.cam_pedestal = self.sim.pedestal()
        self.missing_planted = () if dark else camera.planted_missing(self.n_trains)
        self.cam_writer = CameraTrainWriter(run_dir, proposal, run, preset, self.sim.settings or {},
                                            cfg.sequence_trains)
        self.factors: List[float] = []
        self.rows: Dict[str, list] = {k: [] for k in ("true", "recorded", "factor", "spectrum", "hits", "photons")}
        self.hits: Dict[str, list] = {k: [] for k in ("train", "y", "x", "photons", "energy")}
        ny, nx = preset.shape
        self.model = self._model(ny, nx)

    # ------------------------------------------------------------------ what the camera sees
    def _model(self, ny: int, nx: int) -> Dict[str, np.ndarray]:
        """The per-run parts of the planted signal (spectrum shapes, line geometry)."""
        from smalldata.spectro.viking import photoelectrons_per_count

        cam = self.camera
        if cam.camera == "newton":
            s = self.sim.settings
            p = np.arange(nx, dtype=np.float64)
            shape = np.exp(-0.5 * ((p - nx / 2) / (nx / 12)) ** 2)
            return {"beam_pe": cam.beam_pe * shape / shape.sum(),
                    "baseline_pe": np.polynomial.polynomial.polyval(p / nx, VIKING_BASELINE_PE),
                    "energy": np.polynomial.polynomial.polyval(p, VIKING_CALIBRATION),
                    "calibration": np.array(VIKING_CALIBRATION), "band_rows": np.array([ny // 4, 3 * ny // 4]),
                    "pe_per_count": np.float64(photoelectrons_per_count(s["preampGain"], s["HighCapacity"]))}
        model = {"adu_per_photon": np.float64(cam.adu_per_photon), "cloud_sigma_px": np.float64(cam.cloud_sigma_px),
                 "min_distance": np.float64(cam.min_distance)}
        if cam.camera == "hrixs":
            # lines from a quarter to three quarters of the rows at x = 0, bowed by a tenth of the rows
            e = np.asarray(HRIXS_LINES)
            slope = (e[-1] - e[0]) / (0.5 * ny)
            model.update(line_energies=e, energy_slope=np.float64(slope),
                         energy_intercept=np.float64(e[0] - slope * 0.25 * ny),
                         curvature=np.array([0.0, 0.1 * ny / nx ** 2]))
        return model

    def _row_of(self, energy, x):
        m = self.model
        c1, c2 = m["curvature"]
        return (np.asarray(energy) - m["energy_intercept"]) / m["energy_slope"] + (c2 * x + c1) * x

    def _signal(self, i: int, factor: float) -> np.ndarray:
        """The planted signal (ADU above the pedestal) of true train index ``i``; records its truth."""
        cam, (ny, nx) = self.camera, self.preset.shape
        signal = np.zeros((ny, nx))
        if self.dark:
            return signal
        m = self.model
        if cam.camera == "newton":
            summed = factor * m["beam_pe"] + m["baseline_pe"]
            r0, r1 = m["band_rows"]
            signal[r0:r1] = summed / (r1 - r0) / m["pe_per_count"]
            self.rows["spectrum"].append(summed)
            return signal
        rng = self.rng(_S_CAMERA_SIGNAL, i)
        n = int(rng.poisson(cam.photons_per_train * factor))
        if cam.camera == "hrixs":
            draw = line_sampler(rng, (ny, nx), m["line_energies"], np.asarray(HRIXS_WEIGHTS) / sum(HRIXS_WEIGHTS),
                                self._row_of, 0.3)
        else:
            def draw(k: int) -> np.ndarray:
                return np.stack([rng.uniform(3, ny - 4, k), rng.uniform(3, nx - 4, k), np.full(k, np.nan)], axis=1)
        ys, xs, es = (spaced_points(n, draw, cam.min_distance).reshape(-1, 3).T if n else np.zeros((3, 0)))
        nph = 1 + (rng.random(len(ys)) < cam.double_fraction)
        deposit(signal, ys, xs, nph * cam.adu_per_photon, cam.cloud_sigma_px)
        tid = int(self.train_ids[i])
        for k, v in (("train", np.full(len(ys), tid, np.uint64)), ("y", ys), ("x", xs), ("photons", nph),
                     ("energy", es)):
            self.hits[k].append(v)
        self.rows["hits"].append(len(ys))
        self.rows["photons"].append(int(nph.sum()))
        return signal

    def _intensity(self) -> float:
        """The last written train's X-ray intensity: mean pulse energy of its X-ray pulses over the XGM mean."""
        xgm = np.asarray(self.frames["frame_xgm"][-1])
        xray = np.asarray(self.frames["frame_xray"][-1], bool)
        return float(xgm[xray].mean() / self.cfg.xgm_mean_uj) if xray.any() else 0.0

    # ------------------------------------------------------------------ the run's hooks
    def write_train(self, t: int, pool) -> None:
        """The DSSC train ``t``, then the camera's entry recorded at train ``t``."""
        super().write_train(t, pool)
        self.factors.append(self._intensity())
        recorded = int(self.train_ids[t])
        ts = EPOCH_NS + self.run * 3600 * 10 ** 9 + t * TRAIN_PERIOD_NS
        i = t + self.offset  # the true train whose image is recorded at train t
        if i < 0 or i in self.missing_planted:
            self.cam_writer.write_train(recorded, ts, None)
            return
        signal = self._signal(i, self.factors[i])
        image = noisy_image(signal, self.cam_pedestal, self.sim.noise_adu, self.rng(_S_CAMERA_NOISE, t),
                            self.preset.saturation)
        self.cam_writer.write_train(recorded, ts, image)
        for k, v in (("true", int(self.train_ids[i])), ("recorded", recorded), ("factor", self.factors[i])):
            self.rows[k].append(v)

    def close(self) -> None:
        """Finish every sequence file, the camera's too."""
        super().close()
        self.cam_writer.close()

    def extra_truth(self) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
        """The camera's truth: per true train id, with the ids without an image."""
        true = np.array(self.rows["true"], np.uint64)
        data: Dict[str, np.ndarray] = {
            "camera_train_ids": true, "camera_recorded_train_ids": np.array(self.rows["recorded"], np.uint64),
            "camera_train_factor": np.array(self.rows["factor"], np.float64),
            "camera_missing_train_ids": np.setdiff1d(self.train_ids, true).astype(np.uint64),
            "camera_planted_missing_train_ids": self.train_ids[list(self.missing_planted)].astype(np.uint64),
            "camera_pedestal": self.cam_pedestal, "camera_noise": np.float64(self.sim.noise_adu)}
        if not self.dark:
            data.update({f"camera_{k}": v for k, v in self.model.items()})
            if self.camera.camera == "newton":
                nx = self.preset.shape[1]
                data["camera_spectrum_pe"] = np.array(self.rows["spectrum"], np.float64).reshape(-1, nx)
            else:
                data.update({f"camera_hit_{k}": np.concatenate(v) if v else np.zeros(0)
                             for k, v in self.hits.items() if k != "energy" or self.camera.camera == "hrixs"})
                data["camera_hits_per_train"] = np.array(self.rows["hits"], np.int64)
                data["camera_photons_per_train"] = np.array(self.rows["photons"], np.int64)
        p = self.preset
        attrs = {"camera": p.name, "camera_source": p.source, "camera_device": p.device, "camera_key": p.key,
                 "camera_train_id_offset": self.offset, "camera_shape": np.array(p.shape),
                 "camera_detector_seed": self.sim.detector_seed}
        attrs.update({f"camera_setting_{k}": int(v) for k, v in (self.sim.settings or {}).items()})
        return data, attrs


def simulate_mixed_run(root: os.PathLike, proposal: int, run: int, cfg: SimulationConfig, camera: MixedCamera,
                       dark: bool = False, overwrite: bool = False, threads: Optional[int] = None) -> Path:
    """Write a DSSC run of ``cfg`` with ``camera`` in it (and the truth file); returns the run directory.

    Parameters
    ----------
    root, proposal, run, cfg, dark, overwrite, threads
        As :func:`~smalldata.simulate.runs.simulate_run`.
    camera : MixedCamera
    """
    camera.validate()
    return simulate_run(root, proposal, run, cfg, dark, overwrite, threads,
                        simulation=partial(MixedRunSimulation, camera))
