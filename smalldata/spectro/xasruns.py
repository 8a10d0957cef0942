"""Viking XAS from a sample run and a reference run: per-train spectra without their baseline, the
absorption per column on the calibrated energy axis, its edge, and the result file.

The points kept are the columns inside the signal range where the mean reference spectrum reaches
``min_fraction`` of its maximum (outside the beam ``It / I0`` is noise), sorted by energy.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import h5py
import numpy as np

from smalldata.errors import CalibrationError, ConfigError, DataError, SmallDataError

from .calibration import EnergyCalibration
from .camerasetup import CameraSetup, load_dark
from .viking import remove_baseline
from .vikingruns import run_spectra
from .xas import XAS, edge_position, edge_step, xas


@dataclass
class XASResult:
    """The absorption of a sample run against a reference run.

    Attributes
    ----------
    xas : XAS
        On the kept points, sorted by energy (``xas.energy`` in eV).
    columns : (M,) int64
        Camera column of each point.
    edge, step : float
        Edge position (eV) and step (units of the absorption).
    sample_run, reference_run : int
    thickness : float or None
        Metres; None: the absorbance ``-log(It/I0)``.
    signal_range : (first, last)
        Columns left out of the baseline fit.
    calibration : tuple of float
    dark : str
    """

    xas: XAS
    columns: np.ndarray
    edge: float
    step: float
    sample_run: int
    reference_run: int
    thickness: Optional[float]
    signal_range: Tuple[float, float]
    calibration: Tuple[float, ...]
    dark: str

    @property
    def units(self) -> str:
        """Unit of the absorption: ``1/m`` with a thickness, ``1`` (absorbance) without."""
        return "1" if self.thickness is None else "1/m"


def xas_from_runs(setup: CameraSetup, sample: int, reference: int, calibration: Sequence[float],
                  signal_range: Tuple[float, float], baseline_degree: int = 3, rows: Optional[Tuple[int, int]] = None,
                  thickness: Optional[float] = None, min_fraction: float = 0.1, step_gap: float = 2.0,
                  step_width: float = 1.5, preamp_gain: Optional[int] = None, high_capacity: Optional[int] = None,
                  max_trains: Optional[int] = None, calibration_where: str = "calibration") -> XASResult:
    """XAS of run ``sample`` against run ``reference``.

    Parameters
    ----------
    setup : CameraSetup
    sample, reference : int
    calibration : sequence of float
        Column-to-energy coefficients, ascending powers (eV).
    signal_range : (first, last)
        Columns holding the beam; the baseline is fitted outside.
    baseline_degree : int
    rows : (first, stop), optional
    thickness : float, optional
        Sample thickness (m): the absorption is in 1/m; without it the absorbance.
    min_fraction : float
        Points kept where the mean reference spectrum reaches this fraction of its maximum.
    step_gap, step_width : float
        Edge step: mean absorption in ``[edge + gap, edge + gap + width]`` minus that below the edge (eV).
    preamp_gain, high_capacity : int, optional
    max_trains : int, optional
    calibration_where : str
        Config path of the calibration, named when it is refused.
    """
    if thickness is not None and not (np.isfinite(thickness) and thickness > 0):
        raise ConfigError("--thickness", f"{thickness} is not a positive thickness in metres")
    if not 0 < min_fraction < 1:
        raise ConfigError("--min-fraction", f"{min_fraction} is not a fraction between 0 and 1")
    dark = load_dark(setup)
    it = run_spectra(setup, sample, rows, preamp_gain, high_capacity, max_trains, dark)
    i0 = run_spectra(setup, reference, rows, preamp_gain, high_capacity, max_trains, dark)
    nx = it.spectra.shape[1]
    try:
        cal = EnergyCalibration(tuple(calibration), (0.0, nx - 1.0))
    except CalibrationError as exc:
        raise CalibrationError(f"{calibration_where}: {exc}; run smd_viking calibrate again") from None
    columns = np.arange(nx)
    lo, hi = (float(v) for v in signal_range)
    it_nobl = remove_baseline(columns, it.spectra, (lo, hi), baseline_degree)[0]
    i0_nobl = remove_baseline(columns, i0.spectra, (lo, hi), baseline_degree)[0]
    full = xas(it_nobl, i0_nobl, 1.0 if thickness is None else thickness, cal(columns))
    keep = (columns >= lo) & (columns <= hi) & (full.i0 >= min_fraction * np.max(full.i0)) & (full.it > 0)
    if keep.sum() < 15:
        raise DataError(f"runs {sample} and {reference}: only {int(keep.sum())} columns of the signal range {lo:g}..{hi:g} "
                        f"have a reference spectrum above {min_fraction:g} of its maximum; check --signal-range and "
                        f"that run {reference} is the reference (no sample)")
    order = np.argsort(full.energy[keep])
    kept = full.take(np.flatnonzero(keep)[order])
    edge = edge_position(kept.energy, kept.absorption)
    step = edge_step(kept.energy, kept.absorption, edge, step_gap, step_width)
    return XASResult(kept, columns[keep][order], edge, step, int(sample), int(reference), thickness, (lo, hi),
                     tuple(float(c) for c in calibration), dark[1])


def default_xas_path(setup: CameraSetup, sample: int, reference: int) -> Path:
    """``<config folder>/viking_xas_p<proposal>_r<sample>_r<reference>_<det>.h5``."""
    return setup.config_path.parent / (f"viking_xas_p{setup.proposal:06d}_r{int(sample):04d}_r{int(reference):04d}_"
                                       f"{setup.detector}.h5")


def write_xas(path: os.PathLike, result: XASResult, setup: CameraSetup, overwrite: bool = False) -> Path:
    """Write the result to an HDF5 file atomically: ``energy``, ``absorption``, ``std``, ``sem``, ``it``,
    ``i0``, ``column`` with ``units`` attributes; the runs, thickness, edge and step as attributes."""
    path = Path(path).resolve()
    if path.exists() and not overwrite:
        raise SmallDataError(f"{path} exists; pass --overwrite or another --output")
    if not path.parent.is_dir():
        raise SmallDataError(f"folder {path.parent} does not exist; create it or give another --output")
    x = result.xas
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".h5", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for name, data, unit in (("energy", x.energy, "eV"), ("absorption", x.absorption, result.units),
                                     ("std", x.std, result.units), ("sem", x.stderr, result.units),
                                     ("it", x.it, "photoelectrons"), ("i0", x.i0, "photoelectrons"),
                                     ("column", result.columns, "pixel")):
                f.create_dataset(name, data=data).attrs["units"] = unit
            f.attrs.update(proposal=setup.proposal, detector=setup.detector, camera=setup.preset.name,
                           sample_run=result.sample_run, reference_run=result.reference_run,
                           thickness=np.nan if result.thickness is None else result.thickness,
                           n_sample=x.n_sample, n_reference=x.n_reference, edge_position=result.edge,
                           edge_step=result.step, calibration=np.array(result.calibration),
                           signal_range=np.array(result.signal_range), dark=result.dark,
                           config=str(setup.config_path))
            f.attrs["thickness_units"] = "m"
            f.attrs["edge_position_units"] = "eV"
            f.attrs["edge_step_units"] = result.units
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
