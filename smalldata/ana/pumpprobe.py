"""Pump-probe tools of the session: the scanned variable, laser-off references, running
medians, time zero, knife edge and fluence (formulae in :mod:`smalldata.ana.timefits`)."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from smalldata.ana.references import frame_times, off_reference, running_median
from smalldata.ana.timefits import fit_knife_edge, fit_time_zero, peak_fluence
from smalldata.errors import SmallDataError

#: Scan variables looked at first, in this order (the delay section's steps, then smalldata_tools' names).
SCAN_CANDIDATES = ("delay/step_delay", "scan/varStep", "scan/var0")


class PumpProbeMixin:
    """scan_name, scan_values, getOffVar, runningMedian, fit_time_zero, knife_edge, cube2 of ``SmallDataAna``."""

    def _event_scalar(self, name: str) -> np.ndarray:
        values = np.asarray(self[name])
        if values.ndim != 1:
            raise SmallDataError(f"{name!r} is not a per-event scalar")
        return values

    def scan_candidates(self) -> List[str]:
        """Per-event scalars that change in steps over the run (a few distinct values held over many events)."""
        found = []
        for name in list(SCAN_CANDIDATES) + sorted(k for k in self.event_keys() if k.startswith("scan/")):
            if name not in self or name in found or name.startswith("scan/varStep"):
                continue
            values = np.asarray(self[name], dtype=np.float64)
            if values.ndim != 1:
                continue
            distinct = np.unique(values[np.isfinite(values)])
            if 1 < len(distinct) <= max(2, len(values) // 2):
                found.append(name)
        return found

    @property
    def scan_name(self) -> str:
        """The scanned variable: the delay steps, else smalldata_tools' ``scan/var0``, else the first stepped
        ``scan/*`` variable; '' when nothing was scanned."""
        found = self.scan_candidates()
        return found[0] if found else ""

    @property
    def scan_values(self) -> np.ndarray:
        """The distinct values of :attr:`scan_name` (ascending; empty when nothing was scanned)."""
        name = self.scan_name
        if not name:
            return np.zeros(0)
        values = np.asarray(self[name], dtype=np.float64)
        return np.unique(values[np.isfinite(values)])

    def off_frames(self) -> np.ndarray:
        """X-ray frames without the pump laser (the reference frames of :meth:`getOffVar`)."""
        if "pulses/laser_on" in self:
            xray = np.asarray(self["pulses/xray_on"], bool) if "pulses/xray_on" in self else True
            return ~np.asarray(self["pulses/laser_on"], bool) & xray
        label_id, names = self.labels()
        if "unpumped" not in names:
            raise SmallDataError(f"{self.path} has no laser flags and no 'unpumped' label; give off=... to getOffVar")
        return label_id == names.index("unpumped")

    def on_frames(self) -> np.ndarray:
        """X-ray frames with the pump laser (the frames :meth:`fit_time_zero` fits by default)."""
        if "pulses/laser_on" in self:
            xray = np.asarray(self["pulses/xray_on"], bool) if "pulses/xray_on" in self else True
            return np.asarray(self["pulses/laser_on"], bool) & xray
        label_id, names = self.labels()
        if "pumped" not in names:
            raise SmallDataError(f"{self.path} has no laser flags and no 'pumped' label; give selection=...")
        return label_id == names.index("pumped")

    def getOffVar(self, name: str, n: int = 4, off: Optional[np.ndarray] = None, statistic: str = "mean",
                  add_as: Optional[str] = None) -> np.ndarray:
        """Per event: ``name`` averaged over the ``n`` nearest laser-off frames in time (not the event itself).

        Parameters
        ----------
        name : str
            Per-event scalar.
        n : int
            Reference frames per event.
        off : bool array, optional
            The reference frames; default :meth:`off_frames`.
        statistic : {"mean", "median"}
        add_as : str, optional
            Also keep the reference as a derived variable of this name (:meth:`addVar`).
        """
        values = self._event_scalar(name)
        off = self.off_frames() if off is None else np.asarray(off, bool)
        slots = self["pulses/slot"] if "pulses/slot" in self else self["pulseId"]
        ref = off_reference(values, off, frame_times(self["trainId"], slots), n, statistic)
        if add_as:
            self.addVar(add_as, ref, self.units(name), overwrite=True)
        return ref

    def runningMedian(self, name: str, window: int = 101, selection: Optional[np.ndarray] = None,
                      add_as: Optional[str] = None) -> np.ndarray:
        """Centred running median of ``name`` over ``window`` selected events (NaN outside the selection)."""
        med = running_median(self._event_scalar(name), window, selection)
        if add_as:
            self.addVar(add_as, med, self.units(name), overwrite=True)
        return med

    def fit_time_zero(self, signal, delay: str = "delay/total", selection: Optional[np.ndarray] = None,
                      after: str = "linear", reference: Optional[int] = None, plot: bool = True,
                      t0: Optional[float] = None, rise: Optional[float] = None,
                      tau: Optional[float] = None) -> Dict[str, object]:
        """Time zero and rise time: an error-function step fitted to ``signal`` against ``delay``.

        Parameters
        ----------
        signal : str or array
            Per-event signal (a dataset or derived variable name, or values).
        delay : str
            Per-event delay, ps.
        selection : bool array, optional
            Events to fit (default: pumped X-ray frames with a valid delay).
        after : {"none", "linear", "exponential"}
        reference : int, optional
            Subtract :meth:`getOffVar` with this many laser-off frames first (removes drifts).
        t0, rise, tau : float, optional
            Start values (ps): time zero, rise time (FWHM), decay time.

        Returns
        -------
        dict
            See :func:`smalldata.ana.timefits.fit_time_zero`; also ``time_zero_stage`` (mm) when the
            output has a delay section: the stage position to put into ``delay.time_zero``.
        """
        label = signal if isinstance(signal, str) else "signal"
        y = self._event_scalar(signal) if isinstance(signal, str) else np.asarray(signal, float)
        if reference:
            if not isinstance(signal, str):
                raise SmallDataError("fit_time_zero: reference= needs the signal by name (a dataset or derived "
                                     "variable), not values")
            y = y - self.getOffVar(signal, n=int(reference))
            label = f"{signal} - laser-off reference ({int(reference)} frames)"
        x = self._event_scalar(delay).astype(float)
        if selection is None:
            selection = self.on_frames()
            if "delay/valid" in self:
                selection &= np.asarray(self["delay/valid"], bool)
        sel = np.asarray(selection, bool)
        result = fit_time_zero(x[sel], y[sel], after=after, t0=t0, rise=rise, tau=tau)
        settings = self._delay_settings()
        if settings:
            from smalldata.timing.delays import stage_to_ps

            per_mm = float(stage_to_ps(1.0, 0.0, int(settings["passes"]), int(settings["sign"])))
            result["time_zero_stage"] = float(settings["time_zero"]) + result["t0"] / per_mm
            result["units"]["time_zero_stage"] = "mm"
        if plot:
            fig, ax = self.plots.subplots()
            ax.plot(x[sel], y[sel], ".", ms=3, alpha=0.5, label="events")
            grid = np.linspace(np.nanmin(x[sel]), np.nanmax(x[sel]), 400)
            ax.plot(grid, result["model"](grid), "r-",
                    label=f"t0 = {result['t0']:.3f} ± {result['t0_err']:.3f} ps, "
                          f"FWHM {result['rise']:.3f} ± {result['rise_err']:.3f} ps")
            ax.set_xlabel(f"{delay} (ps)")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
            self.plots.finish(fig, "fit_time_zero")
        return result

    def cube2(self, det: str = "dssc") -> Dict[str, object]:
        """The cube of ``det`` over two variables (``cube.second``) shaped ``(n1, n2, labels, ...)``
        (:func:`smalldata.sums.cube2.read_cube2`)."""
        import h5py

        from smalldata.sums.cube2 import read_cube2

        with h5py.File(self.path, "r") as f:
            if f"Sums/{det}_cube" not in f:
                raise SmallDataError(f"{self.path} has no cube of {det!r}; add 'cube: {{scan: ..., second: ...}}' "
                                     f"to detectors.{det} in the config")
            return read_cube2(f[f"Sums/{det}_cube"])

    def _delay_settings(self) -> Dict[str, object]:
        try:
            return self.user_data("point_data/delay")
        except SmallDataError:
            return {}

    def knife_edge(self, signal: str, position: str, selection: Optional[np.ndarray] = None,
                   normalise_by: Optional[str] = "xgm/sa3_intensity", position_unit: float = 1e-3,
                   pulse_energy: Optional[float] = None, transmission: float = 1.0,
                   sigma_y: Optional[float] = None, plot: bool = True) -> Dict[str, object]:
        """Beam size from a knife-edge scan, and the peak fluence.

        Parameters
        ----------
        signal, position : str
            Transmitted intensity and knife position per event.
        normalise_by : str or None
            Divide the signal by this per-event intensity (its mean kept), e.g. the XGM.
        position_unit : float
            Metres per unit of ``position`` (1e-3: mm).
        pulse_energy : float, optional
            Pulse energy on the sample, J; default the mean of ``normalise_by`` (uJ) times ``transmission``.
        sigma_y : float, optional
            The other axis' rms size (m); default a round beam.

        Returns
        -------
        dict
            :func:`~smalldata.ana.timefits.fit_knife_edge` plus ``pulse_energy`` (J) and
            :func:`~smalldata.ana.timefits.peak_fluence`'s ``fluence`` (J/m^2) and ``fluence_mJ_cm2``.
        """
        y = self._event_scalar(signal).astype(float)
        x = self._event_scalar(position).astype(float)
        sel = np.isfinite(y) & np.isfinite(x) if selection is None else np.asarray(selection, bool)
        energy_err = 0.0
        if normalise_by:
            norm = self._event_scalar(normalise_by).astype(float)
            sel = sel & np.isfinite(norm) & (norm > 0)
            mean = float(np.mean(norm[sel]))
            y = y / norm * mean
            if pulse_energy is None:
                pulse_energy = mean * 1e-6 * transmission
                energy_err = float(np.std(norm[sel]) / np.sqrt(sel.sum())) * 1e-6 * transmission
        result = fit_knife_edge(x[sel], y[sel], position_unit)
        if pulse_energy is not None:
            result["pulse_energy"] = float(pulse_energy)
            result["units"]["pulse_energy"] = "J"
            fl = peak_fluence(pulse_energy, result["sigma"], sigma_y, energy_err, result["sigma_err"])
            result.update({k: v for k, v in fl.items() if k != "units"})
            result["units"].update(fl["units"])
        if plot:
            fig, ax = self.plots.subplots()
            ax.plot(x[sel], y[sel], ".", ms=3, alpha=0.5)
            grid = np.linspace(np.min(x[sel]), np.max(x[sel]), 400)
            ax.plot(grid, result["model"](grid), "r-",
                    label=f"FWHM {result['fwhm'] * 1e6:.1f} ± {result['fwhm_err'] * 1e6:.1f} um")
            ax.set_xlabel(position)
            ax.set_ylabel(signal)
            ax.legend(fontsize=8)
            self.plots.finish(fig, "knife_edge")
        return result
