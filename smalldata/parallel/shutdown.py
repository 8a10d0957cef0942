"""Signals end a run cleanly: a flag checked where it is safe, an exception where it must be.

SIGINT (Ctrl-C) and SIGTERM (``scancel``, a SLURM time limit, ``mpiexec`` forwarding
either) must end every rank, in any phase, without leaving a rank alone in a collective
and without a half-written file. Raising from the handler anywhere cannot give that: it
can land inside an MPI collective's bookkeeping or a finaliser that swallows it, and the
ranks diverge. So the handler records the signal, and the run looks at the flag at its next
poll (between batches, between blocks of the merge) or collective (see
:class:`~smalldata.parallel.progress.Coordinator` and :func:`~smalldata.parallel.mpi.agree`),
where every rank can agree to stop.

Code that may run for ever without reaching a poll (users' functions: ``__init__``,
``setFromDet``, ``process``) runs inside :func:`interruptible`: there the handler also
raises, so an endless loop ends at once; the block turns that into :class:`Interrupted`
naming what it interrupted, which then takes the same agreed way out. Such a block holds
no MPI collective.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType, TracebackType
from typing import Callable, Iterator, List, Optional

from smalldata.errors import SmallDataError
from smalldata.parallel import activity

#: Signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: Optional[int] = None
_interruptible_depth = 0
_raise_where: List[Optional[Callable[[FrameType], bool]]] = []  # per open block: where a signal may raise


class Interrupted(SmallDataError):
    """A signal asked the run to stop; nothing is published.

    Attributes
    ----------
    signum : int
        The signal (``exit_status`` is ``128 + signum``, the shell's convention).
    """

    def __init__(self, signum: int, where: str = "", context: str = ""):
        self.signum = int(signum)
        self.exit_status = 128 + self.signum
        self.context = context
        name = signal.Signals(self.signum).name
        super().__init__(f"interrupted by {name}{where}{' ' + context if context else ''}; no output written")


class SignalInterrupt(BaseException):
    """Raised by the handler inside :func:`interruptible` (a ``BaseException``, as
    ``KeyboardInterrupt``: a user's ``except Exception`` does not swallow it)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


def _flag(signum, frame) -> None:
    global _received
    if _received is None:
        _received = signum
    activity.note_signal(signum)
    if _interruptible_depth > 0 and _raise_where:
        may_raise = _raise_where[-1]
        if may_raise is None or (frame is not None and may_raise(frame)):
            raise SignalInterrupt(signum)


@contextlib.contextmanager
def interruptible(describe: Callable[[Optional[TracebackType]], str] = lambda tb: "",
                  raise_where: Optional[Callable[[FrameType], bool]] = None) -> Iterator[None]:
    """Within the block a stop signal raises at once (in an endless loop too).

    It leaves the block as :class:`Interrupted`, its ``context`` ``describe(traceback)``:
    what the signal interrupted, found from the frames it went through (e.g. "in function
    ... on train ..."). With ``raise_where``, the signal raises only where
    ``raise_where(frame)`` of the interrupted frame is True (e.g. inside a user's function,
    not in a finaliser, which would swallow the exception); elsewhere it sets the flag only.
    A signal received before the block raises at its start. The block must hold no MPI
    collective.
    """
    global _interruptible_depth
    inside = False
    try:
        _raise_where.append(raise_where)
        _interruptible_depth += 1
        inside = True
        if _received is not None:
            raise SignalInterrupt(_received)
        yield
    except SignalInterrupt as exc:
        _interruptible_depth -= 1
        inside = False
        raise Interrupted(exc.signum, context=describe(exc.__traceback__)) from None
    finally:
        if inside:
            _interruptible_depth -= 1
        _raise_where.pop()


def received() -> Optional[int]:
    """The first stop signal received since :func:`reset` (None: none)."""
    return _received


def reset() -> None:
    """Forget a received signal (a new run starts)."""
    global _received
    _received = None


def check(where: str = "") -> None:
    """Raise :class:`Interrupted` if a stop signal has arrived."""
    if _received is not None:
        raise Interrupted(_received, where)


def install() -> None:
    """From now on, for the life of the process, SIGINT and SIGTERM only set the flag (main thread only).

    What a command line does first: then a signal that arrives after the output was
    published (e.g. while MPI shuts down) cannot turn a complete run into a failed exit status.
    """
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, _flag)


@contextlib.contextmanager
def signals_set_flag() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM set the flag instead of interrupting (main thread only).

    When :func:`install` is in force already, the flag is kept as it is (a signal that came
    before the block stops the run at its first check).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is _flag:
        yield
        return
    reset()
    previous = {s: signal.signal(s, _flag) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
