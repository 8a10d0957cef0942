"""The end of a live run on rank 0: the grown rows into the output, with the offline groups, atomically."""
from __future__ import annotations

import datetime
import logging
import socket
import time
from pathlib import Path
from typing import List, Tuple

from smalldata import __version__
from smalldata.errors import SmallDataError
from smalldata.output.writer import OutputFile, merge_parts
from smalldata.pipeline.rungroups import write_run_groups

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
        meta_attrs = {
            "config": config.text, "config_path": str(config.path), "version": __version__,
            "command": command, "n_ranks": n_ranks, "proposal": proposal, "run": -1 if run is None else run,
            "run_path": str(access.path), "source": "karabo-bridge", "endpoint": str(access.path),
            "ended_by": ended_by, "loop_s": loop_s, "start": started.isoformat(),
            "end": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "elapsed_s": time.monotonic() - t0, "host": socket.gethostname(),
        }
        descriptions = [s.describe() for s in setups]
        losses = write_run_groups(out.file, config, stage, setups, points, descriptions, skipped, access,
                                  access.train_ids, meta_attrs)
        meta = out.file["meta"]
        ledger.write(meta["losses"])
        losses.check_usable()
        out.publish()
    except BaseException:
        out.discard()
        raise
    losses.warn()
    return rows, ledger.lines() + losses.lines()
