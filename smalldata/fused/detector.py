"""A detector's batch on the fused path: one kernel pass, the function chain, the sums.

:func:`build_plan` decides at set-up whether a detector takes the fused path;
:func:`process_fused` is :meth:`DetectorSetup.process
<smalldata.pipeline.detectors.DetectorSetup.process>` on it. Without vetoes the run sums
and the cube ride along in the single pass (which frames they take is known before the
functions run); with vetoes they are added in a second pass restricted to them, after
the chain has decided which frames are vetoed.
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from smalldata.fused.plan import FusedPlan, hot_path

log = logging.getLogger(__name__)


def build_plan(det, functions: Sequence, accumulators, dark_subtraction) -> Optional[FusedPlan]:
    """The detector's :class:`FusedPlan`, or None where the numpy path is taken.

    The numpy path remains for common-mode correction (a median per ASIC row needs the
    calibrated row before any consumer), intra-train dark subtraction (frames minus
    other frames), and when ``$SMALLDATA_HOT_PATH`` is ``numpy``.
    """
    if hot_path() != "fused":
        return None
    if det.common_mode != "none" or dark_subtraction is not None:
        log.info("%s: numpy hot path (common mode %s, intra-train darks %s)", det.name, det.common_mode,
                 dark_subtraction is not None)
        return None
    plan = FusedPlan(det, functions, whole_modules=accumulators is not None)
    plan.load_kernel()
    return plan


def process_fused(setup, raw, info, points: Mapping[str, np.ndarray]) -> Tuple[Dict[str, object], np.ndarray]:
    """Calibrate and accumulate ``raw`` in the kernel, run the function chain on its results.

    Returns the chain's outputs (keys ``<func>_<key>``) and the vetoed frames.
    """
    from smalldata.pipeline.chain import run_chain

    acc = setup.accumulators
    one_pass = acc is not None and not setup.vetoes
    inputs = acc.fused_inputs(len(raw), info.label_id, points, info.keep) if one_pass else {}
    frames = setup.plan.run(raw, **inputs)
    out, vetoed = run_chain(setup.functions, setup.vetoes, frames, info.keep, setup.layout)
    if acc is not None and not one_pass:
        setup.plan.run(raw, functions=False, **acc.fused_inputs(len(raw), info.label_id, points,
                                                               info.keep & ~vetoed))
    return out, vetoed
