"""Pulse integrals from raw digitizer traces (TIM / MCP at SCS).

Each X-ray pulse leaves a negative-going peak on the trace. The peak of the
pulse in slot ``s`` is at sample ``first_sample + (s - first_slot) *
samples_per_slot`` (rounded to the nearest sample). Around it two windows,
given as sample offsets relative to that position and half-open
``[start, stop)``, define

* baseline = mean of the trace over ``baseline_window`` (before the pulse),
* integral = sum over ``peak_window`` of ``(baseline - trace)``,

so a negative-going pulse gives a positive integral in ADU x samples. Window
sums come from a cumulative sum of the integer trace: exact, and O(samples)
per train however many pulses there are. See ``docs/pulses.md``.
"""
from __future__ import annotations

import logging
from typing import Sequence, Tuple

import numpy as np

from smalldata.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Unit of the pulse integrals.
INTEGRAL_UNITS = "ADU*sample"


def _window(name: str, window: Sequence[int]) -> Tuple[int, int]:
    try:
        start, stop = (int(v) for v in window)
        exact = all(float(v) == int(v) for v in window)
    except (TypeError, ValueError):
        raise ConfigError(name, f"{window!r} is not a window; use [start, stop] sample offsets, "
                                "e.g. [-20, -5]") from None
    if not exact or stop <= start:
        raise ConfigError(name, f"{list(window)!r} is not a window; use integers [start, stop] with start < stop")
    return start, stop


def check_windows(baseline_window: Sequence[int],
                  peak_window: Sequence[int]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Validate the two windows (sample offsets, half-open); the baseline must end before the peak starts."""
    base = _window("baseline_window", baseline_window)
    peak = _window("peak_window", peak_window)
    if base[1] > peak[0]:
        raise ConfigError("baseline_window", f"{list(base)} overlaps the peak window {list(peak)}; "
                                             f"end it at or before {peak[0]}")
    return base, peak


def pulse_positions(pulse_slots: np.ndarray, first_slot: int, first_sample: int,
                    samples_per_slot: float) -> np.ndarray:
    """Sample position of each pulse: ``first_sample + (slot - first_slot) * samples_per_slot``.

    Parameters
    ----------
    pulse_slots : ndarray, (T, K) int
        Bunch-pattern slots of the pulses, -1 for padding (see
        :func:`smalldata.pulses.bunchpattern.slots_of`).
    first_slot : int
        Slot whose pulse is at ``first_sample``.
    first_sample : int
        Trace sample of the pulse in ``first_slot``.
    samples_per_slot : float
        Digitizer samples per 4.5 MHz slot (> 0; need not be an integer).

    Returns
    -------
    ndarray, (T, K) int64
        Nearest sample (halves round up); -1 for padding.
    """
    slots = np.asarray(pulse_slots, dtype=np.int64)
    pos = np.floor(first_sample + (slots - first_slot) * float(samples_per_slot) + 0.5).astype(np.int64)
    return np.where(slots >= 0, pos, -1)


def pulse_integrals(traces: np.ndarray, positions: np.ndarray, baseline_window: Sequence[int] = (-20, -5),
                    peak_window: Sequence[int] = (-5, 15)) -> np.ndarray:
    """Baseline-subtracted integrals of the pulses of each trace.

    Parameters
    ----------
    traces : ndarray, (T, S) integer (int16 raw samples) or float
    positions : ndarray, (T, K) int
        Sample of each pulse; negative for padding.
    baseline_window, peak_window : (int, int)
        ``[start, stop)`` offsets from the pulse position, in samples.

    Returns
    -------
    ndarray, (T, K) float64
        ``sum_peak(baseline - trace)`` in ADU x samples; NaN for padding and
        for pulses whose windows leave the trace.
    """
    base, peak = check_windows(baseline_window, peak_window)
    traces = np.asarray(traces)
    if traces.ndim != 2:
        raise DataError(f"digitizer traces have shape {traces.shape}; expected (trains, samples)")
    pos = np.asarray(positions, dtype=np.int64)
    if pos.ndim != 2 or pos.shape[0] != traces.shape[0]:
        raise DataError(f"pulse positions {pos.shape} do not match traces {traces.shape}")
    n_samples = traces.shape[1]
    acc = np.int64 if np.issubdtype(traces.dtype, np.integer) else np.float64
    csum = np.zeros((traces.shape[0], n_samples + 1), dtype=acc)
    np.cumsum(traces, axis=1, dtype=acc, out=csum[:, 1:])

    lo = pos + base[0]
    hi = pos + peak[1]
    ok = (pos >= 0) & (lo >= 0) & (hi <= n_samples)
    if np.any((pos >= 0) & ~ok):
        log.warning("%d pulses have integration windows outside the %d-sample trace; their integral is NaN",
                    int(np.sum((pos >= 0) & ~ok)), n_samples)
    rows = np.arange(traces.shape[0])[:, np.newaxis]

    def window_sum(window):
        # clipped indices keep the masked entries in range; they become NaN below
        return (csum[rows, np.clip(pos + window[1], 0, n_samples)]
                - csum[rows, np.clip(pos + window[0], 0, n_samples)])

    baseline = window_sum(base) / float(base[1] - base[0])
    integral = (peak[1] - peak[0]) * baseline - window_sum(peak)
    return np.where(ok, integral, np.nan)


class PulseIntegration:
    """Digitizer pulse integration with fixed parameters.

    Parameters
    ----------
    first_slot : int
        Bunch-pattern slot whose pulse is at ``first_sample``.
    first_sample : int
        Trace sample of the pulse in ``first_slot`` (>= 0).
    samples_per_slot : float
        Digitizer samples per 4.5 MHz slot (> 0).
    baseline_window : (int, int)
        Baseline samples ``[start, stop)`` relative to the pulse position; must
        end at or before ``peak_window[0]``. Default (-20, -5).
    peak_window : (int, int)
        Integrated samples ``[start, stop)`` relative to the pulse position.
        Default (-5, 15).
    """

    def __init__(self, first_slot: int = 0, first_sample: int = 0, samples_per_slot: float = 1.0,
                 baseline_window: Sequence[int] = (-20, -5), peak_window: Sequence[int] = (-5, 15)):
        if isinstance(first_slot, bool) or not isinstance(first_slot, (int, np.integer)) or not 0 <= first_slot < 2700:
            raise ConfigError("first_slot", f"{first_slot!r} is not a slot; use an integer 0..2699")
        if isinstance(first_sample, bool) or not isinstance(first_sample, (int, np.integer)) or first_sample < 0:
            raise ConfigError("first_sample", f"{first_sample!r} is not a sample index; use an integer >= 0")
        try:
            sps = float(samples_per_slot)
        except (TypeError, ValueError):
            sps = float("nan")
        if not np.isfinite(sps) or sps <= 0:
            raise ConfigError("samples_per_slot", f"{samples_per_slot!r} is not valid; use a number > 0 "
                                                  "(digitizer samples per 4.5 MHz slot)")
        base, peak = check_windows(baseline_window, peak_window)
        self.first_slot = int(first_slot)
        self.first_sample = int(first_sample)
        self.samples_per_slot = sps
        self.baseline_window = base
        self.peak_window = peak

    def positions(self, pulse_slots: np.ndarray) -> np.ndarray:
        """Sample positions (T, K) of pulses at ``pulse_slots`` (T, K), -1 for padding."""
        return pulse_positions(pulse_slots, self.first_slot, self.first_sample, self.samples_per_slot)

    def __call__(self, traces: np.ndarray, pulse_slots: np.ndarray) -> np.ndarray:
        """Integrals (T, K) float64 of the pulses at ``pulse_slots`` in ``traces`` (T, S)."""
        return pulse_integrals(traces, self.positions(pulse_slots), self.baseline_window, self.peak_window)

    def params(self) -> dict:
        """Parameters as configured (for ``UserDataCfg``)."""
        return {"first_slot": self.first_slot, "first_sample": self.first_sample,
                "samples_per_slot": self.samples_per_slot,
                "baseline_window": list(self.baseline_window), "peak_window": list(self.peak_window)}

    def __repr__(self) -> str:
        return "PulseIntegration(" + ", ".join(f"{k}={v!r}" for k, v in self.params().items()) + ")"
