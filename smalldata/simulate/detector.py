"""Planted DSSC detector constants and the raw-value model.

Constants come from ``cfg.detector_seed`` alone (per module, per memory cell), so a
dark run and a data run simulated separately share them, and any module subset
gets the same constants for the same module.

Raw value of a pixel in a frame of memory cell ``c``::

    raw = clip(rint(pedestal[c] + noise * N(0, 1) + gain * photons), 0, 511)

with ``pedestal[c] = base + cell_common[c] + cell_pixel[c]`` (+ ``hot_offset_adu``
for hot pixels), ``noise`` uniform in ``noise_min_adu..noise_max_adu`` (x ``noisy_factor``
for noisy pixels). Dead pixels output ``rint(base)`` in every frame: no noise and no
photon response (their expected photons are zero).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from smalldata.constants import DSSC_ADC_MAX, DSSC_MODULE_SHAPE

N_PIXELS = DSSC_MODULE_SHAPE[0] * DSSC_MODULE_SHAPE[1]

# RNG stream numbers of the detector constants
_STREAM_MODULE = 0
_STREAM_CELL = 1


class DetectorModel:
    """Pedestal, noise and bad pixels of the simulated modules.

    Parameters
    ----------
    cfg : SimulationConfig
    n_cells : int
        Memory cells to make pedestals for (cells 0..n_cells-1).
    modules : sequence of int, optional
        Default ``cfg.modules``.

    Attributes
    ----------
    pedestal : (M, C, 65536) float32
        Mean raw value per module, cell, pixel (ADU), including hot offsets and dead values.
    noise : (M, 65536) float32
        Gaussian sigma of the analog noise (ADU); 0 for dead pixels.
    dead, hot, noisy : (M, 65536) bool
    """

    def __init__(self, cfg, n_cells: int = 1, modules: Optional[Sequence[int]] = None):
        self.cfg = cfg
        self.modules = tuple(cfg.modules if modules is None else modules)
        self.n_cells = int(n_cells)
        m_count = len(self.modules)
        self.pedestal = np.empty((m_count, self.n_cells, N_PIXELS), np.float32)
        self.noise = np.empty((m_count, N_PIXELS), np.float32)
        self.dead = np.zeros((m_count, N_PIXELS), bool)
        self.hot = np.zeros((m_count, N_PIXELS), bool)
        self.noisy = np.zeros((m_count, N_PIXELS), bool)
        for i, m in enumerate(self.modules):
            self._make_module(i, m)

    def _make_module(self, i: int, module: int) -> None:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.detector_seed, _STREAM_MODULE, module])
        base = cfg.pedestal_mean_adu + cfg.pedestal_pixel_spread_adu * rng.standard_normal(N_PIXELS)
        noise = rng.uniform(cfg.noise_min_adu, cfg.noise_max_adu, N_PIXELS)
        counts = [int(round(f * N_PIXELS)) for f in (cfg.dead_fraction, cfg.hot_fraction, cfg.noisy_fraction)]
        chosen = rng.choice(N_PIXELS, size=sum(counts), replace=False)
        dead, hot, noisy = np.split(chosen, np.cumsum(counts)[:2])
        self.dead[i, dead] = True
        self.hot[i, hot] = True
        self.noisy[i, noisy] = True
        noise[noisy] *= cfg.noisy_factor
        base[hot] += cfg.hot_offset_adu
        dead_value = np.clip(np.rint(base[dead]), 0, DSSC_ADC_MAX)
        noise[dead] = 0.0
        self.noise[i] = noise
        for c in range(self.n_cells):
            crng = np.random.default_rng([cfg.detector_seed, _STREAM_CELL, module, c])
            common = cfg.pedestal_cell_spread_adu * crng.standard_normal()
            pix = cfg.pedestal_cell_pixel_spread_adu * crng.standard_normal(N_PIXELS, dtype=np.float32)
            ped = base + common + pix
            ped[dead] = dead_value
            self.pedestal[i, c] = ped

    def module_index(self, module: int) -> int:
        """Position of ``module`` along axis 0 of the arrays."""
        return self.modules.index(module)

    def raw_frames(self, index: int, cells: np.ndarray, rng: np.random.Generator,
                   photon_pixels: Sequence[np.ndarray] = (), photon_counts: Sequence[np.ndarray] = ()) -> np.ndarray:
        """Raw frames of one module.

        Parameters
        ----------
        index : int
            Module position (:meth:`module_index`).
        cells : (n,) int
            Memory cell of each frame.
        rng : numpy Generator
            Source of the noise.
        photon_pixels, photon_counts : sequences of arrays
            Pairs of flat pixel indices (S,) and photon counts (n, S), added as
            ``gain * counts`` (indices unique within one pair).

        Returns
        -------
        ndarray, (n, 1, 128, 512) uint16
        """
        cells = np.asarray(cells, dtype=np.int64)
        n = len(cells)
        out = rng.standard_normal((n, N_PIXELS), dtype=np.float32)
        out *= self.noise[index]
        if n and np.array_equal(cells, np.arange(cells[0], cells[0] + n)):
            out += self.pedestal[index, cells[0]:cells[0] + n]
        else:
            out += self.pedestal[index, cells]
        gain = np.float32(self.cfg.gain_adu_per_photon)
        for pixels, counts in zip(photon_pixels, photon_counts):
            out[:, pixels] += gain * counts.astype(np.float32)
        np.rint(out, out=out)
        np.clip(out, 0, DSSC_ADC_MAX, out=out)
        return out.astype(np.uint16).reshape(n, 1, *DSSC_MODULE_SHAPE)

    def shaped(self, name: str) -> np.ndarray:
        """A constant reshaped to (M, [C,] 128, 512)."""
        arr = getattr(self, name)
        return arr.reshape(arr.shape[:-1] + DSSC_MODULE_SHAPE)
