"""Planted physics: scattering ring, speckle, pump effect, XGM and digitizer pulses.

The functions here are pure (arrays and a ``numpy.random.Generator`` in, arrays out),
so tests can make frames in memory without writing a run.

Definitions (also in ``docs/simulator.md``):

- Momentum transfer of a pixel at distance ``r`` from the beam centre in the
  detector plane: ``q = 4 pi / lambda * sin(theta / 2)``, ``theta = atan(r / distance)``.
- Ring expectation (photons per pixel per pulse of mean XGM):
  ``peak * exp(-(q - ring_q)^2 / (2 ring_sigma_q^2))``.
- Speckle: ``S = |E|^2`` with ``E`` complex white Gaussian noise convolved with
  ``g(d) = exp(-|d|^2 / (2 s^2))`` (``s = size_px``, pixel row/column units), scaled so
  ``<S> = 1``. Then ``I = 1 - sqrt(beta) + sqrt(beta) S`` has ``<I> = 1``,
  ``Var(I) = beta`` and ``<I(x) I(x+d)> - 1 = beta exp(-|d|^2 / (2 s^2))``.
- Pump factor at delay ``d`` (mm): ``1 - A (1 - exp(-(d - t0) / tau))`` for ``d > t0``, else 1.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import fft as sfft

from smalldata.constants import DSSC_MODULE_SHAPE, wavelength_m

#: Ring expectations below this fraction of the peak are set to zero (no Poisson draw there).
RING_CUTOFF = 1e-4


def q_map(x: np.ndarray, y: np.ndarray, beam_center: Sequence[float] = (0.0, 0.0),
          distance: float = 5.0, photon_energy: float = 860.0) -> np.ndarray:
    """Momentum transfer (m^-1) of pixels at detector-plane positions ``x``, ``y`` (m)."""
    r = np.hypot(np.asarray(x) - beam_center[0], np.asarray(y) - beam_center[1])
    theta = np.arctan2(r, distance)
    return 4 * np.pi / wavelength_m(photon_energy) * np.sin(theta / 2)


def ring_expectation(q: np.ndarray, ring_q: float = 1.0e8, ring_sigma_q: float = 4.0e6,
                     peak_photons: float = 0.05) -> np.ndarray:
    """Expected photons per pixel of a Gaussian ring in ``q`` (no cut-off)."""
    return peak_photons * np.exp(-0.5 * ((np.asarray(q) - ring_q) / ring_sigma_q) ** 2)


def ring_expectation_map(cfg, modules: Optional[Sequence[int]] = None,
                         photon_energy: Optional[float] = None) -> np.ndarray:
    """The planted ring of a :class:`SimulationConfig`: (M, 128, 512) float64 photons per pixel.

    Per pulse of mean XGM, unpumped, before bad pixels and the cut-off; ``modules``
    defaults to ``cfg.modules``, ``photon_energy`` to ``cfg.photon_energy`` (eV).
    """
    from smalldata.geometry.positions import load_dssc_geometry, pixel_positions

    geom = load_dssc_geometry(cfg.geometry_file, cfg.quadrant_positions)
    x, y, _ = pixel_positions(geom, list(cfg.modules if modules is None else modules))
    q = q_map(x, y, cfg.beam_center, cfg.distance, cfg.photon_energy if photon_energy is None else photon_energy)
    return ring_expectation(q, cfg.ring_q, cfg.ring_sigma_q, cfg.ring_peak_photons)


@lru_cache(maxsize=8)
def _gaussian_kernel_ft(shape: Tuple[int, int], size_px: float) -> np.ndarray:
    """Fourier transform (complex64) of a periodic Gaussian kernel with sum of squares 1."""
    ny, nx = shape
    dy = np.minimum(np.arange(ny), ny - np.arange(ny))
    dx = np.minimum(np.arange(nx), nx - np.arange(nx))
    if size_px > 0:
        g = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2.0 * size_px ** 2))
    else:
        g = np.zeros(shape)
        g[0, 0] = 1.0
    g /= np.sqrt((g ** 2).sum())
    return sfft.fft2(g).astype(np.complex64)


def speckle_intensity(shape: Sequence[int], contrast: float = 0.3, size_px: float = 2.0,
                      rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Speckle intensity of mean 1, contrast ``contrast`` and Gaussian size ``size_px``.

    Parameters
    ----------
    shape : (..., ny, nx)
        Leading axes are independent patterns (e.g. frames).
    contrast : float
        beta = Var(I) / <I>^2, 0..1.
    size_px : float
        sigma of the Gaussian intensity autocorrelation excess, pixels (0 = uncorrelated).
    rng : numpy Generator

    Returns
    -------
    ndarray, float32, ``shape``
        ``I = 1 - sqrt(beta) + sqrt(beta) S``, ``S`` fully developed speckle with <S> = 1.
    """
    rng = np.random.default_rng() if rng is None else rng
    shape = tuple(int(s) for s in shape)
    ny, nx = shape[-2:]
    pad = int(np.ceil(8 * size_px)) + 1
    padded = shape[:-2] + (ny + pad, nx + pad)
    field = rng.standard_normal(padded + (2,), dtype=np.float32)
    white = (field[..., 0] + 1j * field[..., 1]) * np.float32(np.sqrt(0.5))
    kernel = _gaussian_kernel_ft(padded[-2:], float(size_px))
    filtered = sfft.ifft2(sfft.fft2(white, axes=(-2, -1)) * kernel, axes=(-2, -1))
    s = (filtered.real ** 2 + filtered.imag ** 2)[..., :ny, :nx].astype(np.float32)
    root = np.float32(np.sqrt(contrast))
    return (1 - root) + root * s


def pump_factor(delay: np.ndarray, amplitude: float = 0.4, t0: float = 1.0, tau: float = 1.5) -> np.ndarray:
    """Ring-intensity factor of pumped frames at delay-stage position ``delay`` (mm)."""
    d = np.asarray(delay, dtype=float)
    return np.where(d > t0, 1 - amplitude * (1 - np.exp(-(d - t0) / tau)), 1.0)


def xgm_pulse_energies(n: int, mean_uj: float = 1000.0, log_sigma: float = 0.25,
                       rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """``n`` lognormal pulse energies (uJ) with mean ``mean_uj``."""
    rng = np.random.default_rng() if rng is None else rng
    mu = np.log(mean_uj) - 0.5 * log_sigma ** 2
    return rng.lognormal(mu, log_sigma, size=n)


def poisson_on(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson draws (int32) of ``expected``, drawing only where it is > 0."""
    out = np.zeros(expected.shape, np.int32)
    pos = expected > 0
    out[pos] = rng.poisson(expected[pos])
    return out


# ---------------------------------------------------------------------- digitizer
def digitizer_pulse_positions(slots: np.ndarray, first_slot: int, first_sample: int,
                              samples_per_slot: int) -> np.ndarray:
    """Sample index of the pulse of each bunch-pattern slot."""
    return first_sample + (np.asarray(slots, dtype=np.int64) - first_slot) * samples_per_slot


def planted_pulse_integral(depth: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Area (ADU x samples, positive) of Gaussian pulses of depth ``depth`` below the baseline."""
    return np.asarray(depth, dtype=float) * sigma_samples * np.sqrt(2 * np.pi)


def digitizer_trace(n_samples: int, positions: np.ndarray, depths: np.ndarray, sigma_samples: float = 5.0,
                    baseline: float = 100.0, noise: float = 3.0,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """One int16 trace: baseline + Gaussian noise with negative Gaussian pulses.

    Parameters
    ----------
    positions : (P,) int
        Sample index of each pulse peak.
    depths : (P,) float
        Peak depth below the baseline, ADU.
    """
    rng = np.random.default_rng() if rng is None else rng
    trace = rng.standard_normal(n_samples, dtype=np.float32) * np.float32(noise) + np.float32(baseline)
    if len(positions):
        w = int(np.ceil(6 * sigma_samples))
        offs = np.arange(-w, w + 1)
        idx = np.asarray(positions, dtype=np.int64)[:, None] + offs
        vals = np.asarray(depths, dtype=float)[:, None] * np.exp(-0.5 * (offs / sigma_samples) ** 2)
        ok = (idx >= 0) & (idx < n_samples)
        np.subtract.at(trace, idx[ok], vals[ok].astype(np.float32))
    return np.clip(np.rint(trace), -32768, 32767).astype(np.int16)


def device_pulse_integrals(trace: np.ndarray, positions: np.ndarray, sigma_samples: float = 5.0,
                           baseline_samples: int = 500) -> np.ndarray:
    """What the digitizer computes per pulse: sum of (baseline - trace) over peak +- 4 sigma.

    The baseline is the mean of the first ``baseline_samples`` samples.
    """
    trace = np.asarray(trace, dtype=np.float64)
    baseline = trace[:baseline_samples].mean()
    w = int(np.ceil(4 * sigma_samples))
    idx = np.clip(np.asarray(positions, dtype=np.int64)[:, None] + np.arange(-w, w + 1), 0, len(trace) - 1)
    return (baseline - trace[idx]).sum(axis=1).astype(np.float32)


def speckle_slices(roi: Sequence[int]) -> Tuple[slice, slice]:
    """(rows, columns) slices of a ``(y0, y1, x0, x1)`` module region."""
    y0, y1, x0, x1 = roi
    return slice(y0, y1), slice(x0, x1)


def roi_flat_indices(roi: Sequence[int]) -> np.ndarray:
    """Flat pixel indices (into 128 x 512) of a ``(y0, y1, x0, x1)`` region, row-major."""
    rows, cols = speckle_slices(roi)
    grid = np.arange(DSSC_MODULE_SHAPE[0] * DSSC_MODULE_SHAPE[1]).reshape(DSSC_MODULE_SHAPE)
    return grid[rows, cols].ravel()
