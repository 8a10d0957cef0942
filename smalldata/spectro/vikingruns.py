"""Viking runs read as spectra, and the energy calibration from monochromator runs.

A run's spectra: the Newton's frames, dark-subtracted and summed over the chosen rows, in
photoelectrons (:func:`~smalldata.spectro.viking.spectrum`; the factor from the run's
``preampGain`` and ``HighCapacity``, or from the function entry's ``preamp_gain`` and
``high_capacity``). The calibration: each monochromator run's mean spectrum, its baseline fitted
outside a window around its line and removed, the line's peak column
(:func:`~smalldata.spectro.viking.peak_position`) against the run's monochromator energy
(``SA3_XTD10_MONO/MDL/PHOTON_ENERGY`` ``actualEnergy``), a polynomial over the columns
(:func:`~smalldata.spectro.viking.calibrate_from_mono`), refused when not monotonic there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from smalldata.constants import PHOTON_ENERGY_KEY, PHOTON_ENERGY_SOURCE
from smalldata.errors import CalibrationError, ConfigError, DataError

from .calibration import EnergyCalibration
from .camerasetup import CameraSetup, checked_settings, iter_frames, load_dark, open_run
from .viking import calibrate_from_mono, peak_position, photoelectrons_per_count, remove_baseline, spectrum


@dataclass
class RunSpectra:
    """Per-train spectra of one run.

    Attributes
    ----------
    run : int
    train_ids : (N,) int64
        Train ids of the images (the preset's offset applied).
    spectra : (N, nx) float64 photoelectrons
    pe_per_count : float
    settings : dict
        The camera's settings in the run.
    """

    run: int
    train_ids: np.ndarray
    spectra: np.ndarray
    pe_per_count: float
    settings: Dict[str, float]


def run_spectra(setup: CameraSetup, run: int, rows: Optional[Tuple[int, int]] = None,
                preamp_gain: Optional[int] = None, high_capacity: Optional[int] = None,
                max_trains: Optional[int] = None, dark=None) -> RunSpectra:
    """The per-train spectra of a run, in photoelectrons.

    Parameters
    ----------
    setup : CameraSetup
    run : int
    rows : (first, stop), optional
        Rows summed (default all).
    preamp_gain, high_capacity : int, optional
        The camera's settings when the run does not record them (the run's own win otherwise).
    max_trains : int, optional
    dark : (CameraDark, name), optional
        The dark and its name (loaded from the setup if None).
    """
    ny = setup.preset.shape[0]
    if rows is not None and not 0 <= int(rows[0]) < int(rows[1]) <= ny:
        raise ConfigError("rows", f"{list(rows)} are not rows [first, stop) of the {ny}-row image")
    dark, dark_name = dark if dark is not None else load_dark(setup)
    data = open_run(setup, run)
    what = f"run {run}"
    settings = checked_settings(setup, data, dark, dark_name, what)
    gain = settings.get("preampGain", preamp_gain)
    mode = settings.get("HighCapacity", high_capacity)
    if gain is None or mode is None:
        raise DataError(f"{what}: the camera's preampGain and HighCapacity are not recorded; set preamp_gain and "
                        f"high_capacity in the viking function of {setup.where}")
    pe = photoelectrons_per_count(gain, mode)
    ids, spectra = [], []
    for tids, frames in iter_frames(data, setup.preset, what, max_trains):
        ids.append(tids)
        spectra.append(spectrum(frames, dark.mean, pe, rows, dark.mask))
    return RunSpectra(int(run), np.concatenate(ids), np.concatenate(spectra), float(pe), settings)


def mono_energy(run_data, run: int, tolerance: float = 0.1) -> float:
    """The monochromator energy (eV) of a run, one value within ``tolerance`` eV over its trains."""
    what = f"run {run}"
    if PHOTON_ENERGY_SOURCE not in run_data.control_sources:
        raise DataError(f"{what}: no monochromator energy ({PHOTON_ENERGY_SOURCE} is not in the run); give "
                        "monochromator runs")
    values = np.asarray(run_data[PHOTON_ENERGY_SOURCE, PHOTON_ENERGY_KEY].ndarray(), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise DataError(f"{what}: {PHOTON_ENERGY_SOURCE} {PHOTON_ENERGY_KEY} has no finite value")
    if np.ptp(values) > tolerance:
        raise DataError(f"{what}: the monochromator energy moves by {np.ptp(values):.3g} eV (from {values.min():.3f} "
                        f"to {values.max():.3f}); use runs at one energy each (or raise --energy-tolerance)")
    return float(np.mean(values))


@dataclass
class MonoCalibration:
    """The energy calibration from monochromator runs.

    Attributes
    ----------
    calibration : EnergyCalibration
        Over the camera's columns.
    runs : list of int
    energies, peaks : (R,) float64
        Monochromator energy (eV) and peak column of each run.
    spectra : (R, nx) float64
        Mean baseline-free spectrum of each run (photoelectrons).
    n_trains : (R,) int64
    dark : str
    """

    calibration: EnergyCalibration
    runs: List[int]
    energies: np.ndarray
    peaks: np.ndarray
    spectra: np.ndarray
    n_trains: np.ndarray
    dark: str

    @property
    def residuals(self) -> np.ndarray:
        """(R,) calibrated energy of each peak minus its monochromator energy (eV)."""
        return self.calibration(self.peaks) - self.energies


def line_spectrum(mean: np.ndarray, peak_window: int, baseline_degree: int, what: str,
                  min_snr: float = 10.0) -> np.ndarray:
    """A mono run's mean spectrum with the baseline fitted outside ``peak_window`` columns around its
    maximum removed; a run without a clear line is refused."""
    x = np.arange(len(mean), dtype=np.float64)
    top = int(np.argmax(mean))
    window = (top - peak_window, top + peak_window)
    corrected, _ = remove_baseline(x, mean, window, baseline_degree)
    outside = corrected[(x < window[0]) | (x > window[1])]
    noise = 1.4826 * float(np.median(np.abs(outside - np.median(outside)))) or float(np.std(outside))
    if not corrected[top] > min_snr * noise:
        raise DataError(f"{what}: no monochromator line (the highest column, {top}, is {corrected[top]:.3g} "
                        f"photoelectrons above the baseline, the noise {noise:.3g}); is the beam on the Viking?")
    return corrected


def calibrate_runs(setup: CameraSetup, runs: Sequence[int], degree: int = 2, rows: Optional[Tuple[int, int]] = None,
                   baseline_degree: int = 3, peak_window: int = 50, preamp_gain: Optional[int] = None,
                   high_capacity: Optional[int] = None, energy_tolerance: float = 0.1,
                   max_trains: Optional[int] = None) -> MonoCalibration:
    """Fit the pixel-to-energy polynomial of the Viking to monochromator runs.

    Parameters
    ----------
    setup : CameraSetup
    runs : sequence of int
        Monochromator runs, one energy each (at least ``degree + 1``).
    degree : int
    rows : (first, stop), optional
    baseline_degree : int
        Degree of the baseline fitted outside each run's line.
    peak_window : int
        Half width (columns) of the window around each line left out of its baseline fit.
    preamp_gain, high_capacity : int, optional
    energy_tolerance : float
        Spread (eV) of a run's monochromator energy still taken as one energy.
    max_trains : int, optional
    """
    runs = [int(r) for r in runs]
    if len(runs) < degree + 1:
        raise DataError(f"{len(runs)} monochromator run(s) cannot fix a polynomial of degree {degree}; give at least "
                        f"{degree + 1} runs with -r (or a lower --degree)")
    dark = load_dark(setup)
    energies, means, counts = [], [], []
    for run in runs:
        energies.append(mono_energy(open_run(setup, run), run, energy_tolerance))
        spec = run_spectra(setup, run, rows, preamp_gain, high_capacity, max_trains, dark)
        means.append(line_spectrum(spec.spectra.mean(axis=0), peak_window, baseline_degree, f"run {run}"))
        counts.append(len(spec.train_ids))
    try:
        calibration, peaks = calibrate_from_mono(means, energies, degree)
    except CalibrationError as exc:
        cols = np.arange(len(means[0]), dtype=np.float64)
        pairs = ", ".join(f"run {r}: {e:.2f} eV at column {peak_position(cols, m):.1f}"
                          for r, e, m in zip(runs, energies, means))
        raise CalibrationError(f"mono runs ({pairs}): {exc}") from None
    return MonoCalibration(calibration, runs, np.array(energies), np.asarray(peaks, np.float64), np.array(means),
                           np.array(counts, np.int64), dark[1])


@dataclass
class VikingEntry:
    """What the commands take from the detector's ``viking`` function entry (all optional there).

    Attributes
    ----------
    rows : (first, stop) or None
    baseline_degree : int or None
    signal_range : (low, high) or None
        Where the beam lies, as the viking function reads it: in eV when the entry has a
        ``calibration``, in columns (pixels) without.
    calibration : tuple of float or None
        Column-to-energy coefficients, ascending powers (eV).
    preamp_gain, high_capacity : int or None
    where : str
        Config path of the entry ('' without one).
    """

    rows: Optional[Tuple[int, int]] = None
    baseline_degree: Optional[int] = None
    signal_range: Optional[Tuple[float, float]] = None
    calibration: Optional[Tuple[float, ...]] = None
    preamp_gain: Optional[int] = None
    high_capacity: Optional[int] = None
    where: str = ""

    def signal_columns(self, nx: int) -> Optional[Tuple[float, float]]:
        """The signal range in columns (converted through the entry's calibration when it is in eV)."""
        if self.signal_range is None or self.calibration is None:
            return self.signal_range
        cal = EnergyCalibration(self.calibration, (0.0, nx - 1.0))
        lo, hi = sorted(float(v) for v in cal.pixel(np.array(self.signal_range)))
        return lo, hi

    def signal_range_in_ev(self, calibration: EnergyCalibration) -> Optional[Tuple[float, float]]:
        """The signal range in eV under ``calibration`` (the entry's range converted when in columns)."""
        if self.signal_range is None or self.calibration is not None:
            return self.signal_range
        lo, hi = sorted(float(v) for v in calibration(np.array(self.signal_range, dtype=np.float64)))
        return lo, hi


def _pair(value, where: str, what: str, whole: bool) -> Tuple:
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value) or not value[1] > value[0]:
        raise ConfigError(where, f"{value!r} is not {what} [first, last] with last > first")
    return tuple(value)


def viking_entry(entry: Optional[dict], where: str) -> VikingEntry:
    """The keys the commands use from a ``viking`` function entry, checked (one line naming the key)."""
    if entry is None:
        return VikingEntry()
    out = VikingEntry(where=where)
    if entry.get("rows") is not None:
        out.rows = _pair(entry["rows"], f"{where}.rows", "rows", True)
    if entry.get("signal_range") is not None:
        out.signal_range = _pair(entry["signal_range"], f"{where}.signal_range", "a range (eV with a calibration, "
                                 "columns without)", False)
    if entry.get("calibration") is not None:
        cal = entry["calibration"]
        if not isinstance(cal, (list, tuple)) or len(cal) < 2 or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cal):
            raise ConfigError(f"{where}.calibration", f"{cal!r} is not a list of coefficients [c0, c1, ...] "
                                                      "(ascending powers of the column, eV)")
        out.calibration = tuple(float(v) for v in cal)
    for key in ("baseline_degree", "preamp_gain", "high_capacity"):
        value = entry.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.{key}", f"{value!r} is not a whole number >= 0")
            setattr(out, key, int(value))
    return out
