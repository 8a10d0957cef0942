"""A time limit for one call of user code per batch (``function_time_limit``).

Within :func:`limited` an interval timer (SIGALRM, main thread) raises
:class:`TimeLimitExceeded` when the limit is over, wherever the Python code is (an
endless loop too); the caller names the function, the detector, the train and the fix.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

_limit: Optional[float] = None
_active = False


class TimeLimitExceeded(BaseException):
    """User code ran longer than the limit (a ``BaseException``: ``except Exception`` does not swallow it)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        super().__init__(f"longer than {self.seconds:g} s")


def set_limit(seconds: Optional[float]) -> None:
    """Seconds a call within :func:`limited` may take (None: no limit)."""
    global _limit
    _limit = None if seconds is None else float(seconds)


def limit() -> Optional[float]:
    """The limit in force (None: none)."""
    return _limit


def _expired(signum, frame) -> None:
    if _active and _limit is not None:
        raise TimeLimitExceeded(_limit)


@contextlib.contextmanager
def limited() -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` if the block takes longer than the limit (nested: the outer block counts)."""
    global _active
    if _limit is None or _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expired)
    _active = True
    try:
        signal.setitimer(signal.ITIMER_REAL, _limit)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _active = False
        signal.signal(signal.SIGALRM, previous)
