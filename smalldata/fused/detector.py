"""Whether a detector takes the fused path, decided at set-up.

:func:`build_plan` gives the detector's :class:`~smalldata.fused.plan.FusedPlan` (its kernel
loaded), or None for the numpy path; :meth:`DetectorSetup.process
<smalldata.pipeline.detectors.DetectorSetup.process>` runs the batches on it.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

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
