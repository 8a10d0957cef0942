"""The end of a live run on rank 0: the grown rows into the output, with the offline groups, atomically."""
from __future__ import annotations

import datetime
import logging
import socket
import time
from pathlib import Path
from typing import List, Tuple

import h5py
import numpy as np

from smalldata import __version__
from smalldata.errors import SmallDataError
from smalldata.output.losses import LossSummary
from smalldata.output.writer import OutputFile, merge_parts, write_mapping

log = logging.getLogger(__name__)


def finish_output(output: Path, overwrite: bool, grown: Path, n_ranks: int, config, stage, setups, points,
                  skipped: list, access, ledger, proposal: int, run, command: str, started, t0: float,
                  ended_by: str, loop_s: float) -> Tuple[int, List[str]]:
    """Write the output from the grown rows; returns the rows and the loss lines (console).

    Parameters
    ----------
    output : Path
        The final output.
    overwrite : bool
        Replace an existing output.
    grown : Path
        The growing file of the run (closed).
    n_ranks : int
    config, stage, setups, points
        The run's config, frame stage, detector set-ups (accumulators reduced) and point reader.
    skipped : list
        ``(train_id, reason)`` of used trains without rows.
    access : LiveAccess
    ledger : StreamLedger
    proposal, run : int
    command : str
    started : datetime
    t0 : float
        ``time.monotonic()`` at the start.
    ended_by : str
        Why the run ended.
    loop_s : float
        Seconds from the end of the set-up to the last round with trains (``/meta`` ``loop_s``).
    """
    out = OutputFile(output, overwrite)
    try:
        rows = merge_parts([grown], out.file) if grown.exists() else 0
        if "trainId" not in out.file:
            raise SmallDataError(f"no frames came from {access.path} ({ended_by}); no output written")
        cfg = out.file.create_group("UserDataCfg")
        for s in setups:
            write_mapping(cfg.require_group(s.name), s.describe())
        write_mapping(cfg.require_group("point_data"), points.describe())
        write_mapping(cfg.require_group("frames"), stage.describe())
        sums = None
        for s in setups:
            if s.accumulators is not None:
                sums = sums or out.file.create_group("Sums")
                s.accumulators.write(sums, s.det.geometry, s.modules)
        meta = out.file.create_group("meta")
        train_ids = access.train_ids
        meta.attrs.update({
            "config": config.text, "config_path": str(config.path), "version": __version__,
            "command": command, "n_ranks": n_ranks, "proposal": proposal, "run": -1 if run is None else run,
            "run_path": str(access.path), "source": "karabo-bridge", "endpoint": str(access.path),
            "ended_by": ended_by, "loop_s": loop_s, "start": started.isoformat(),
            "end": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "elapsed_s": time.monotonic() - t0, "host": socket.gethostname(),
            "n_trains_input": len(train_ids), "n_trains_skipped": len(skipped),
        })
        meta.create_dataset("skipped_trainId", data=np.array([t for t, _ in skipped], dtype=np.uint64))
        meta.create_dataset("skipped_reason", data=np.array([r for _, r in skipped], dtype=object),
                            dtype=h5py.string_dtype())
        incomplete, n_pairs = [], 0
        n_out = len(np.unique(out.file["trainId"][()]))
        for s in setups:
            counts = access.frame_counts(s.modules)
            expected = counts.max(axis=1, keepdims=True)
            for ti, mi in zip(*np.nonzero(counts < expected)):
                incomplete.append((int(train_ids[ti]), int(s.modules[mi])))
            n_pairs += n_out * len(s.modules)
        meta.create_dataset("incomplete_trains", data=np.array(incomplete, dtype=np.uint64).reshape(-1, 2))
        meta["incomplete_trains"].attrs["columns"] = "trainId, module: module frames missing in this train"
        losses = LossSummary.from_output(
            out.file, [(f"{g}/{n}", spec["per"]) for (g, n), spec in points.specs.items()], len(train_ids),
            len(skipped), len(incomplete), n_pairs, {})
        losses.write(meta)
        ledger.write(meta["losses"])
        losses.check_usable()
        out.publish()
    except BaseException:
        out.discard()
        raise
    losses.warn()
    return rows, ledger.lines() + losses.lines()
