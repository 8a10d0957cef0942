"""Spectrometer results from producer outputs: Viking XAS from a sample and a reference output, hRIXS
spectra averaged over a run or binned by a per-train variable.

The layout read (docs/output.md): a per-train camera ``<cam>`` has its own rows, ``/<cam>/trainId``
and ``/<cam>/<func>_<key>`` (T, ...); the energy axis of a function is ``/UserDataCfg/<cam>/<func>/energy``
(eV). Per-pulse or per-train point data at the top level (``/<group>/<key>``, rows of ``/trainId``)
are joined to the camera's trains by train id: the mean over the train's rows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from smalldata.ana.trainrows import reduce_to_trains
from smalldata.errors import DataError
from smalldata.spectro.xas import XAS, xas


@dataclass
class BinnedSpectrum:
    """A camera's mean spectrum, over the run or per bin of a variable.

    Attributes
    ----------
    spectrum : (B,) or (K, B) float64
        Mean over the trains (of each bin; NaN for a bin without trains).
    n_trains : (1,) or (K,) int64
        Trains averaged (per bin).
    energy : (B,) float64 or None
        Energy of each spectral point (eV), when the output records it.
    edges : (K + 1,) float64 or None
        Bin edges of the variable (None without ``by`` or when binning by its distinct values).
    centres : (K,) float64 or None
        Bin centres, or the distinct values.
    by : str or None
        The variable's dataset path.
    """

    spectrum: np.ndarray
    n_trains: np.ndarray
    energy: Optional[np.ndarray] = None
    edges: Optional[np.ndarray] = None
    centres: Optional[np.ndarray] = None
    by: Optional[str] = None


def _dataset(f: h5py.File, path: str, what: str) -> h5py.Dataset:
    path = path.strip("/")
    if path not in f or not isinstance(f[path], h5py.Dataset):
        parent = path.rpartition("/")[0]
        have = sorted(k for k in f[parent].keys()) if parent in f and isinstance(f[parent], h5py.Group) else []
        hint = f"; {parent} holds {', '.join(have)}" if have else ""
        raise DataError(f"{f.filename}: no dataset {path} ({what}){hint}")
    return f[path]


def _camera_rows(f: h5py.File, detector: str, key: str) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A camera's train ids, its per-train rows of ``key`` and the function's energy axis (or None)."""
    path = key.strip("/") if key.startswith("/") else f"{detector}/{key}"
    data = _dataset(f, path, f"per-train output of {detector}")
    trains = _dataset(f, f"{detector}/trainId", f"the train ids of the camera {detector}")[()]
    if data.shape[0] != len(trains):
        raise DataError(f"{f.filename}: {path} has {data.shape[0]} rows, {detector}/trainId {len(trains)}; is "
                        f"{detector} a per-train camera?")
    name = path.rpartition("/")[2]
    cfg = f.get(f"UserDataCfg/{detector}")
    funcs = [g for g in (cfg.keys() if isinstance(cfg, h5py.Group) else ())
             if name.startswith(g + "_") and isinstance(cfg[g], h5py.Group) and "energy" in cfg[g]]
    energy = cfg[max(funcs, key=len)]["energy"][()].astype(np.float64) if funcs else None
    return np.asarray(trains, np.int64), np.asarray(data[()], np.float64), energy


def _variable_per_train(f: h5py.File, by: str, trains: np.ndarray) -> np.ndarray:
    """A per-row variable for each of the camera's trains: its own rows when it lives next to a
    ``trainId`` of its length, else the rows of the top-level ``/trainId``; the mean of a train's rows
    (NaN where the train has none)."""
    data = _dataset(f, by, "the variable to bin by")
    if data.ndim != 1:
        raise DataError(f"{f.filename}: {by} has shape {data.shape}; bin by a scalar per row")
    parent = by.strip("/").rpartition("/")[0]
    own = f.get(f"{parent}/trainId") if parent else None
    if isinstance(own, h5py.Dataset) and own.shape == data.shape:
        ids = own[()]
    elif "trainId" in f and f["trainId"].shape == data.shape:
        ids = f["trainId"][()]
    else:
        raise DataError(f"{f.filename}: {by} has {data.shape[0]} rows and no trainId of that length next to it or at "
                        "the top level; give a per-train or per-event dataset")
    return reduce_to_trains(np.asarray(data[()], np.float64), np.asarray(ids, np.int64), trains, how="mean")


def hrixs_spectrum(output: os.PathLike, detector: str, key: str, by: Optional[str] = None,
                   bins: Union[None, int, Sequence[float]] = None) -> BinnedSpectrum:
    """The mean spectrum of a camera's per-train spectra, or the mean per bin of a per-train variable.

    Parameters
    ----------
    output : path
        A producer output.
    detector : str
        The camera's group.
    key : str
        The spectra, ``<func>_<key>`` in the camera's group (e.g. ``hrixs_spectrum``), or an absolute path.
    by : str, optional
        Dataset path of the variable: in a group with its own ``trainId`` (the camera's, another
        camera's) or top-level point data (rows of ``/trainId``, averaged per train).
    bins : int or sequence of float, optional
        Number of equal bins over the variable's range, or bin edges; None: one bin per distinct value
        (scan steps).

    Returns
    -------
    BinnedSpectrum
        Trains whose spectrum is not finite, or whose variable is NaN or outside the bins, are left out.
    """
    with h5py.File(output, "r") as f:
        trains, spectra, energy = _camera_rows(f, detector, key)
        good = np.all(np.isfinite(spectra.reshape(len(spectra), -1)), axis=1)
        if by is None:
            if not good.any():
                raise DataError(f"{output}: no finite spectrum in {detector}/{key}")
            return BinnedSpectrum(spectra[good].mean(axis=0), np.array([good.sum()]), energy)
        values = _variable_per_train(f, by, trains)
    good &= np.isfinite(values)
    if not good.any():
        raise DataError(f"{output}: no train of {detector} has both a spectrum and a value of {by}")
    v = values[good]
    if bins is None:
        centres, index = np.unique(v, return_inverse=True)
        edges = None
    else:
        if np.ndim(bins) == 0:
            if int(bins) < 1:
                raise DataError(f"bins={bins}: give a positive number of bins or their edges")
            edges = np.linspace(v.min(), v.max(), int(bins) + 1)
        else:
            edges = np.asarray(bins, np.float64)
            if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
                raise DataError(f"bins {list(edges.ravel())}: give increasing bin edges")
        index = np.searchsorted(edges, v, side="right") - 1
        index[v == edges[-1]] = len(edges) - 2  # the last edge belongs to the last bin
        centres = 0.5 * (edges[1:] + edges[:-1])
    k = len(centres)
    inside = (index >= 0) & (index < k)
    rows = spectra[good][inside].reshape(inside.sum(), -1)
    counts = np.bincount(index[inside], minlength=k)
    sums = np.zeros((k, rows.shape[1]))
    np.add.at(sums, index[inside], rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
    return BinnedSpectrum(mean.reshape((k,) + spectra.shape[1:]), counts.astype(np.int64), energy, edges,
                          np.asarray(centres, np.float64), by)


def viking_xas(sample_output: os.PathLike, reference_output: os.PathLike, detector: str = "viking",
               key: str = "viking_spectrum", thickness: float = 1.0) -> XAS:
    """XAS from the per-train Viking spectra of two producer outputs: ``-log(It/I0) / thickness``.

    Parameters
    ----------
    sample_output, reference_output : path
        Outputs of the sample run (It) and of the reference run (I0).
    detector : str
        The camera's group.
    key : str
        The per-train spectra, ``<func>_<key>`` (use the baseline-free ones, e.g. ``viking_spectrum_nobl``,
        when the function writes them).
    thickness : float
        Sample thickness (m); 1 gives the absorbance.

    Returns
    -------
    XAS
        Per spectral point, with ``energy`` from ``/UserDataCfg/<detector>/<func>/energy`` (eV).
    """
    spectra, energies = [], []
    for path in (sample_output, reference_output):
        with h5py.File(path, "r") as f:
            _, rows, energy = _camera_rows(f, detector, key)
        if energy is None:
            raise DataError(f"{path}: no energy axis (UserDataCfg/{detector}/<function>/energy) for {key}; calibrate "
                            "the viking function (smd_viking calibrate --write) and process the run again")
        good = np.all(np.isfinite(rows), axis=1)
        spectra.append(rows[good])
        energies.append(energy)
    if energies[0].shape != energies[1].shape or not np.allclose(energies[0], energies[1], rtol=0, atol=1e-9):
        raise DataError(f"{sample_output} and {reference_output} have different energy axes; process both runs with "
                        "the same calibration")
    return xas(spectra[0], spectra[1], thickness, energies[0])
