"""What a stop signal or a time limit interrupted, found from the frames it went through.

One-line messages name the user's function (config path, class and method) that was
running, e.g. ``in function detectors.dssc.functions[1] (mymod:Slow).process``.
"""
from __future__ import annotations

import weakref
from types import FrameType, TracebackType
from typing import Optional, Tuple

from smalldata.plugin.contract import function_label
from smalldata.plugin.detfunc import DetObjectFunc


def function_in(tb: Optional[TracebackType]) -> Optional[Tuple[DetObjectFunc, str]]:
    """The innermost method of a :class:`DetObjectFunc` among the frames of ``tb``: (function, method)."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if isinstance(owner, DetObjectFunc):
            found = (owner, frame.f_code.co_name)
        tb = tb.tb_next
    return found


#: Code where an exception is swallowed ("Exception ignored in ..."): a signal must not raise there.
_FINALISER_FILES = {weakref.__file__}


def in_user_function(frame: FrameType) -> bool:
    """Whether ``frame`` runs inside a method of a :class:`DetObjectFunc` and not in a finaliser.

    Where a stop signal may raise at once (:func:`smalldata.parallel.shutdown.interruptible`).
    """
    if frame.f_code.co_name == "__del__" or frame.f_code.co_filename in _FINALISER_FILES:
        return False
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), DetObjectFunc):
            return True
        frame = frame.f_back
    return False


def describe(tb: Optional[TracebackType], train: Optional[int] = None, phase: str = "") -> str:
    """``in function <label>.<method> on train <id>`` (the phase without a train), for :class:`Interrupted`."""
    parts = []
    found = function_in(tb)
    if found is not None:
        func, method = found
        parts.append(f"in function {function_label(func)}.{method}")
    if train is not None:
        parts.append(f"on train {train}")
    elif phase:
        parts.append(phase)
    return " ".join(parts)
