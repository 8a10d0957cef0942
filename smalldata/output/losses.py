"""What a run lost, counted once at the end: written to ``/meta/losses`` and shown on the console.

Counted from the published rows and the run's bookkeeping: frames rejected per reason
(``/rejection/reasons``), incomplete (train, module) pairs, skipped trains, rows whose
ids disagreed with the INDEX (see :mod:`smalldata.io.faults`) and NaN point data. Rank 0
warns once for every count above :data:`WARN_FRACTION`; a run where every frame was
rejected is an error (nothing usable would be published).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List

import h5py
import numpy as np

from smalldata.errors import DataError

log = logging.getLogger(__name__)

#: A loss above this fraction of its total gets a warning on the console.
WARN_FRACTION = 0.1


@dataclass
class LossSummary:
    """Counts of what was lost, each with the total it is a fraction of.

    Attributes
    ----------
    n_frames, n_trains : int
        Rows (frames) in the output and trains of the input.
    rejected : dict
        Frames rejected per reason name (a frame can have several reasons).
    rejected_any : int
        Frames rejected for any reason.
    incomplete_pairs : int
        (train, module) pairs with frames missing from the module's file.
    n_pairs : int
        (train, module) pairs of the output's trains.
    skipped_trains : int
        Input trains with no row.
    invalid : dict
        Trains not used per module or source because their ids disagree with the INDEX.
    nan_points : dict
        Rows with NaN per point-data dataset.
    """

    n_frames: int
    n_trains: int
    rejected: Dict[str, int] = field(default_factory=dict)
    rejected_any: int = 0
    incomplete_pairs: int = 0
    n_pairs: int = 0
    skipped_trains: int = 0
    invalid: Dict[str, int] = field(default_factory=dict)
    nan_points: Dict[str, int] = field(default_factory=dict)
    contradictions: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_output(cls, out: h5py.File, point_paths, n_trains: int, skipped_trains: int, incomplete_pairs: int,
                    n_pairs: int, invalid: Dict[str, int]) -> "LossSummary":
        """Count the losses of an output being written (``out``) and the run's bookkeeping.

        ``point_paths`` are ``(path, per)`` of the point data (``per``: ``"train"`` or ``"pulse"``).
        """
        from smalldata.pulses.rejection import Reason

        n_frames = int(out["trainId"].shape[0]) if "trainId" in out else 0
        summary = cls(n_frames=n_frames, n_trains=n_trains, skipped_trains=skipped_trains,
                      incomplete_pairs=incomplete_pairs, n_pairs=n_pairs, invalid=dict(invalid))
        if "rejection/reasons" in out:
            reasons = out["rejection/reasons"][()]
            summary.rejected_any = int(np.count_nonzero(reasons))
            for reason in Reason:
                count = int(np.count_nonzero(reasons & np.uint16(int(reason))))
                if count:
                    summary.rejected[reason.name.lower()] = count
        xray_on = out["pulses/xray_on"][()] if "pulses/xray_on" in out else None
        if xray_on is not None:  # the config's frame labels and slot spacing against the bunch pattern
            checks = {"frames not aligned to a bunch-pattern slot (pulses.slot_spacing?)":
                      ~out["pulses/aligned"][()] if "pulses/aligned" in out else None}
            if "pattern/is_dark" in out:
                is_dark = out["pattern/is_dark"][()]
                checks["frames labelled dark that had X-rays (pattern.labels?)"] = is_dark & xray_on
                checks["frames labelled for X-rays that had none (pattern.labels, pulses.slot_spacing?)"] = \
                    ~is_dark & ~xray_on
            for label, hits in checks.items():
                count = 0 if hits is None else int(np.count_nonzero(hits))
                if count:
                    summary.contradictions[label] = count
        for path, per in point_paths:
            if path in out:
                missing = np.isnan(out[path][()])
                if per == "pulse" and xray_on is not None:
                    missing &= xray_on  # frames without X-rays have no pulse value by design
                count = int(np.count_nonzero(missing))
                if count:
                    summary.nan_points[path] = count
        return summary

    def items(self) -> List[tuple]:
        """``(label, count, total)`` of every loss that occurred."""
        rows = [(f"frames rejected ({name})", n, self.n_frames) for name, n in self.rejected.items()]
        if self.skipped_trains:
            rows.append(("trains skipped", self.skipped_trains, self.n_trains))
        if self.incomplete_pairs:
            rows.append(("incomplete (train, module) pairs", self.incomplete_pairs, self.n_pairs))
        rows += [(f"trains of {where} with ids not matching the INDEX (not used)", n, self.n_trains)
                 for where, n in self.invalid.items()]
        rows += [(f"NaN in {path}", n, self.n_frames) for path, n in self.nan_points.items()]
        rows += [(label, n, self.n_frames) for label, n in self.contradictions.items()]
        return rows

    def lines(self) -> List[str]:
        """One console line per loss: ``label: count of total (percent)``."""
        return [f"{label}: {n} of {total} ({100.0 * n / max(total, 1):.1f}%)" for label, n, total in self.items()]

    def warn(self, fraction: float = WARN_FRACTION) -> None:
        """Log one warning listing every loss above ``fraction`` of its total (call on rank 0 only)."""
        large = [f"{label} {n}/{total}" for label, n, total in self.items() if n > fraction * max(total, 1)]
        if large:
            log.warning("large losses (over %.0f%%): %s; see /meta/losses in the output", 100 * fraction,
                        "; ".join(large))

    def check_usable(self) -> None:
        """:class:`DataError` when every frame was rejected: the output would hold nothing usable."""
        if self.n_frames and self.rejected_any == self.n_frames:
            reasons = ", ".join(f"{name} {n}" for name, n in self.rejected.items())
            raise DataError(f"every one of the {self.n_frames} frames was rejected ({reasons}); no output written; "
                            "check the rejection settings (e.g. rejection.xgm) against the data")

    def write(self, meta: h5py.Group) -> None:
        """Store the counts as attributes of ``meta/losses``."""
        group = meta.create_group("losses")
        group.attrs.update({"n_frames": self.n_frames, "n_trains": self.n_trains,
                            "frames_rejected": self.rejected_any, "trains_skipped": self.skipped_trains,
                            "incomplete_pairs": self.incomplete_pairs, "n_pairs": self.n_pairs})
        for name, n in self.rejected.items():
            group.attrs[f"frames_rejected_{name}"] = n
        for where, n in self.invalid.items():
            group.attrs[f"trains_invalid_ids {where}"] = n
        for path, n in self.nan_points.items():
            group.attrs[f"nan {path}"] = n
        for label, n in self.contradictions.items():
            group.attrs[label.split(" (")[0]] = n
