"""Running a detector's function trees on a batch, with rejected and vetoed frames skipped.

Functions run in config order on the frames still selected; a veto after a function
(a condition on its output) removes frames from the selection for the later functions,
as in a hit-finding chain. Skipped frames keep their rows, with fill values
(:mod:`smalldata.plugin.skipped`).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from smalldata.errors import FunctionError, SmallDataError
from smalldata.parallel import activity, timelimit
from smalldata.pipeline.interrupts import function_in
from smalldata.plugin.contract import Layout, check_layout, function_label, name_error
from smalldata.plugin.detfunc import DetObjectFunc
from smalldata.plugin.frames import Frames, read_only
from smalldata.plugin.ragged import is_ragged
from smalldata.plugin.skipped import spread
from smalldata.pulses.rejection import Veto, evaluate_veto


def run_function(func: DetObjectFunc, frames: Frames, layout: Optional[Layout] = None) -> Dict[str, object]:
    """``func.run(frames)`` on read-only frames, its outputs checked against ``layout``.

    An exception raised by a user's function (not smalldata's own) becomes a
    :class:`~smalldata.errors.FunctionError` naming the function by config path and class.
    """
    activity.note(f"in function {function_label(func)}")
    try:
        with timelimit.limited():
            out = func.run(read_only(frames))
    except timelimit.TimeLimitExceeded as exc:
        raise time_limit_error(function_in(exc.__traceback__) or (func, "run"), frames, exc.seconds) from None
    except SmallDataError as exc:
        raise name_error(getattr(exc, "smalldata_function", None) or func, exc) from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a user function ending the job is named too
        owner = getattr(exc, "smalldata_function", None) or func
        if type(owner).__module__.startswith("smalldata."):
            raise
        raise FunctionError(f"{type(exc).__name__}: {exc} (in function {function_label(owner)}; "
                            "run with --debug for the traceback)") from exc
    if layout is not None:
        check_layout({k: v for k, v in layout.items() if k.startswith(f"{func.name}_")}, out,
                     f" for the batch of trains {frames.train_ids[0]}..{frames.train_ids[-1]}" if len(frames) else "")
    return out


def time_limit_error(found: Tuple[DetObjectFunc, str], frames: Frames, seconds: float) -> FunctionError:
    """One line naming the function that ran over ``function_time_limit``, its detector, the trains and the fix."""
    func, method = found
    path = getattr(func, "config_path", "") or ""
    detector = f" of detector {path.split('.')[1]}" if path.startswith("detectors.") and path.count(".") >= 2 else ""
    trains = (f"train {frames.train_ids[0]}" if len(frames) and frames.train_ids[0] == frames.train_ids[-1] else
              f"trains {frames.train_ids[0]}..{frames.train_ids[-1]}" if len(frames) else "an empty batch")
    return FunctionError(f"function {function_label(func)}{detector} ran longer than function_time_limit "
                         f"({seconds:g} s) in {method}() on one batch, at {trains}; make it faster, or raise "
                         "function_time_limit in the config (or remove it for no limit)")


def run_chain(functions: Sequence[DetObjectFunc], vetoes: Sequence[Mapping], frames: Frames,
              selected: np.ndarray, layout: Optional[Layout] = None) -> Tuple[Dict[str, object], np.ndarray]:
    """Run ``functions`` on the ``selected`` frames, applying ``vetoes`` in between.

    ``layout`` (from :func:`smalldata.plugin.contract.check_function`) is what every batch
    must return; a difference fails at that batch, naming the function.

    Returns
    -------
    outputs : dict
        Every function's outputs for all N frames (keys ``<func>_<key>``).
    vetoed : ndarray, (N,) bool
        Frames removed by a veto.
    """
    selected = np.asarray(selected, dtype=bool).copy()
    vetoed = np.zeros(len(selected), dtype=bool)
    outputs: Dict[str, object] = {}
    frames = read_only(frames)
    subset, subset_of = frames, None
    for func in functions:
        if selected.all():
            computed = np.arange(len(selected))
            out = run_function(func, frames, layout)
        else:
            # with nothing selected, one frame is computed to learn the output layout, then discarded
            computed = np.flatnonzero(selected) if selected.any() else np.arange(min(1, len(selected)))
            if subset_of is None or not np.array_equal(subset_of, computed):
                subset, subset_of = read_only(frames.subset(computed)), computed
            out = run_function(func, subset, layout)
        full = spread(out, selected, computed)
        outputs.update(full)
        for spec in vetoes:
            if spec["after"] == func.name:
                hit = evaluate_veto({k: v for k, v in full.items() if not is_ragged(v)},
                                    Veto(spec["key"], spec["op"], spec["value"])) & selected
                vetoed |= hit
                selected &= ~hit
    return outputs, vetoed


def veto_specs(vetoes: List[Mapping]) -> List[Dict]:
    """Vetoes as plain dicts (for UserDataCfg)."""
    return [dict(v) for v in vetoes]
