"""Scan binning: a per-frame scan value (delay, photon energy, ...) to a bin number.

:class:`ScanBinning` gives the bins of a :class:`~smalldata.sums.cube.CubeAccumulator`
(edges, fixed width, one bin per distinct value, or a single bin). See ``docs/cubes.md``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from smalldata.errors import ConfigError, DataError


class ScanBinning:
    """Bins of a per-frame scan value.

    Give at most one of ``edges``, ``width`` or ``unique``; none of them gives a
    single bin that takes every frame (also those with NaN scan values).

    Parameters
    ----------
    edges : sequence of float, optional
        Increasing bin edges; bin ``i`` is ``[edges[i], edges[i+1])``.
    width : float, optional
        Bins of this width centred on ``origin + k * width``; the range comes
        from :meth:`fit` with the run's scan values.
    origin : float
        Centre of one of the ``width`` bins. Default 0.
    unique : bool
        One bin per distinct scan value (exact equality), from :meth:`fit`.
    name : str
        Name of the scan value (e.g. ``"delay"``), stored with the cube.
    units : str
        Unit of the scan value (e.g. ``"s"``), stored with the cube.

    Frames whose value is NaN or outside all bins get bin -1 (no bin).
    """

    def __init__(self, edges: Optional[Sequence[float]] = None, width: Optional[float] = None,
                 origin: float = 0.0, unique: bool = False, name: str = "scan", units: str = ""):
        given = [edges is not None, width is not None, bool(unique)]
        if sum(given) > 1:
            raise ConfigError("binning", "give only one of edges, width or unique")
        self.name = str(name)
        self.units = str(units)
        self.origin = float(origin)
        self.width = None
        self._k0 = 0
        self._fitted = True
        if edges is not None:
            e = np.asarray(edges, dtype=np.float64)
            if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                raise ConfigError("binning.edges", f"{list(np.ravel(edges))!r} are not bin edges; "
                                                   "use at least 2 finite, strictly increasing numbers")
            self.mode = "edges"
            self.edges = e
            self.centres = 0.5 * (e[1:] + e[:-1])
        elif width is not None:
            if isinstance(width, bool) or not isinstance(width, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(width) or width <= 0:
                raise ConfigError("binning.width", f"{width!r} is not a bin width; use a number > 0")
            if not np.isfinite(self.origin):
                raise ConfigError("binning.origin", f"{origin!r} is not finite; use a number")
            self.mode = "width"
            self.width = float(width)
            self._fitted = False
        elif unique:
            self.mode = "unique"
            self._fitted = False
        else:
            self.mode = "single"
            self.edges = np.array([-np.inf, np.inf])
            self.centres = np.array([np.nan])
        if not self._fitted:
            self.edges = None
            self.centres = None

    @property
    def fitted(self) -> bool:
        """True once the bins are known (always, except width/unique before :meth:`fit`)."""
        return self._fitted

    def fit(self, run_values: np.ndarray) -> "ScanBinning":
        """Fix the bins of ``width`` / ``unique`` binning from all scan values of the run.

        Every MPI rank must call it with the same values (e.g. the scan value of
        every train of the run) so that all ranks get the same bins.
        """
        if self.mode in ("edges", "single"):
            return self
        v = np.asarray(run_values, dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            raise DataError(f"scan value {self.name!r} has no finite values in the run; cannot make bins")
        if self.mode == "width":
            k = self._bin_number(v)
            self._k0 = int(k.min())
            ks = np.arange(self._k0, int(k.max()) + 1)
            self.centres = self.origin + ks * self.width
            self.edges = self.origin + np.append(ks - 0.5, ks[-1] + 0.5) * self.width
        else:
            self.centres = np.unique(v)
            mid = 0.5 * (self.centres[1:] + self.centres[:-1])
            first = self.centres[0] - (mid[0] - self.centres[0] if len(mid) else 0.0)
            last = self.centres[-1] + (self.centres[-1] - mid[-1] if len(mid) else 0.0)
            self.edges = np.concatenate([[first], mid, [last]])
        self._fitted = True
        return self

    def _bin_number(self, v: np.ndarray) -> np.ndarray:
        return np.floor((v - self.origin) / self.width + 0.5).astype(np.int64)

    @property
    def n_bins(self) -> int:
        """Number of bins (needs :meth:`fit` first for width and unique binning)."""
        if not self._fitted:
            raise ConfigError("binning", f"{self.mode} binning of {self.name!r} needs fit(run_values) first")
        return len(self.centres)

    def assign(self, values: Optional[np.ndarray], n_frames: Optional[int] = None) -> np.ndarray:
        """Bin of each frame, (N,) int64, -1 = no bin.

        ``values`` (N,) float are the frames' scan values; for single-bin
        binning they may be None, then ``n_frames`` gives N.
        """
        n_bins = self.n_bins
        if self.mode == "single":
            n = len(values) if values is not None else n_frames
            if n is None:
                raise DataError("single-bin assignment needs values or n_frames")
            return np.zeros(n, dtype=np.int64)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        finite = np.isfinite(v)
        vv = np.where(finite, v, 0.0)
        if self.mode == "edges":
            idx = np.searchsorted(self.edges, vv, side="right") - 1
        elif self.mode == "width":
            idx = self._bin_number(vv) - self._k0
        else:
            pos = np.minimum(np.searchsorted(self.centres, vv), n_bins - 1)
            idx = np.where(self.centres[pos] == vv, pos, -1)
        ok = finite & (idx >= 0) & (idx < n_bins)
        return np.where(ok, idx, -1).astype(np.int64)

    def params(self) -> dict:
        """Parameters as configured."""
        return {"mode": self.mode, "width": self.width, "origin": self.origin, "name": self.name,
                "units": self.units}

    @classmethod
    def from_arrays(cls, edges: np.ndarray, centres: np.ndarray, mode: str, name: str = "scan",
                    units: str = "", width: Optional[float] = None, origin: float = 0.0) -> "ScanBinning":
        """Rebuild fitted binning from stored edges and centres (see :meth:`CubeAccumulator.read`)."""
        if mode == "edges":
            return cls(edges=edges, name=name, units=units)
        if mode == "single":
            return cls(name=name, units=units)
        b = cls(width=width, origin=origin, name=name, units=units) if mode == "width" \
            else cls(unique=True, name=name, units=units)
        return b.set_bins(edges, centres)

    def set_bins(self, edges: np.ndarray, centres: np.ndarray) -> "ScanBinning":
        """Take bins found before (stored ``edges`` and ``centres``) instead of :meth:`fit`; returns self."""
        self.edges = np.asarray(edges, dtype=np.float64)
        self.centres = np.asarray(centres, dtype=np.float64)
        if self.mode == "width":
            self._k0 = int(np.rint((self.centres[0] - self.origin) / self.width))
        self._fitted = True
        return self
