"""Signals end a run cleanly: the handler only sets a flag that the run checks where it is safe.

SIGINT (Ctrl-C) and SIGTERM (``scancel``, a SLURM time limit, ``mpiexec`` forwarding
either) must end every rank, in any phase, without leaving a rank alone in a collective
and without a half-written file. Raising ``KeyboardInterrupt`` from the handler cannot
give that: it can land anywhere (inside an MPI call, a finaliser that swallows it), so
ranks diverge. Here the handler records the signal, and the run looks at the flag at
its next poll (between batches, between blocks of the merge) or collective (see
:class:`~smalldata.parallel.progress.Coordinator` and :func:`~smalldata.parallel.mpi.agree`),
where every rank can agree to stop.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

from smalldata.errors import SmallDataError

#: Signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: Optional[int] = None


class Interrupted(SmallDataError):
    """A signal asked the run to stop; nothing is published.

    Attributes
    ----------
    signum : int
        The signal (``exit_status`` is ``128 + signum``, the shell's convention).
    """

    def __init__(self, signum: int, where: str = ""):
        self.signum = int(signum)
        self.exit_status = 128 + self.signum
        name = signal.Signals(self.signum).name
        super().__init__(f"interrupted by {name}{where}; no output written")


def _flag(signum, frame) -> None:
    global _received
    if _received is None:
        _received = signum


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
