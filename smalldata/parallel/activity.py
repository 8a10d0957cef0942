"""What a rank is doing, kept where its supervising process can read it.

Under an MPI launcher each rank runs in a child of the process the launcher started
(:mod:`smalldata.parallel.supervisor`). The child writes here, in memory shared with that
parent, when it last made progress, on which train, what it was doing (a phase or a
function), the stop signal it received, and the temporaries a hard death would leave. The
parent reads it to name a rank that stopped making progress or died. Without a supervisor
(a plain process, the tests) every call here does nothing.
"""
from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass
from typing import Optional, Tuple

#: heartbeat (monotonic s), stall timeout (s), train (-1: none), state, first stop signal (0: none)
_HEAD = struct.Struct("=ddqii")
_TEXT = 256  # bytes of "what it is doing"
_PATHS = 4096  # bytes of temporaries, NUL-separated
_SIZE = _HEAD.size + _TEXT + _PATHS

STARTING, RUNNING, FINISHED = 0, 1, 2

#: Seconds without progress before a rank is named (``stall_timeout``'s default).
DEFAULT_STALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Snapshot:
    """One reading of a rank's record."""

    heartbeat: float
    stall_timeout: float
    train: Optional[int]
    state: int
    signal: int
    doing: str
    temporaries: Tuple[str, ...]


class ActivityRecord:
    """A rank's record in anonymous shared memory (made before ``fork``, shared with the child)."""

    def __init__(self, stall_timeout: float = DEFAULT_STALL_TIMEOUT):
        self._buf = mmap.mmap(-1, _SIZE)
        _HEAD.pack_into(self._buf, 0, time.monotonic(), float(stall_timeout), -1, STARTING, 0)

    def _head(self) -> list:
        return list(_HEAD.unpack_from(self._buf, 0))

    def _set(self, index: int, value) -> None:
        head = self._head()
        head[index] = value
        _HEAD.pack_into(self._buf, 0, *head)

    def note(self, doing: Optional[str] = None, train: Optional[int] = None) -> None:
        """Progress now; optionally what the rank does and on which train."""
        if doing is not None:
            text = doing.encode("utf-8", "replace")[:_TEXT - 1]
            self._buf[_HEAD.size:_HEAD.size + _TEXT] = text.ljust(_TEXT, b"\0")
        head = self._head()
        head[0] = time.monotonic()
        if train is not None:
            head[2] = int(train)
        if head[3] == STARTING:
            head[3] = RUNNING
        _HEAD.pack_into(self._buf, 0, *head)

    def set_stall_timeout(self, seconds: float) -> None:
        """Seconds without progress before the supervisor names this rank."""
        self._set(1, float(seconds))

    def set_state(self, state: int) -> None:
        """``RUNNING`` or ``FINISHED`` (the rank ended through its own code, whatever its status)."""
        self._set(3, int(state))

    def note_signal(self, signum: int) -> None:
        """The first stop signal this rank received."""
        if self._head()[4] == 0:
            self._set(4, int(signum))

    def set_temporaries(self, paths: Tuple[str, ...]) -> None:
        """Files and folders of the run to remove if this rank dies without cleaning up."""
        data = "\0".join(paths).encode("utf-8")[:_PATHS]
        start = _HEAD.size + _TEXT
        self._buf[start:start + _PATHS] = data.ljust(_PATHS, b"\0")

    def read(self) -> Snapshot:
        """The record as it is now."""
        heartbeat, timeout, train, state, signum = self._head()
        doing = bytes(self._buf[_HEAD.size:_HEAD.size + _TEXT]).split(b"\0", 1)[0].decode("utf-8", "replace")
        start = _HEAD.size + _TEXT
        paths = bytes(self._buf[start:start + _PATHS]).rstrip(b"\0").decode("utf-8", "replace")
        return Snapshot(heartbeat, timeout, None if train < 0 else int(train), int(state), int(signum), doing,
                        tuple(p for p in paths.split("\0") if p))


_current: Optional[ActivityRecord] = None


def attach(record: Optional[ActivityRecord]) -> None:
    """From now on this process reports to ``record`` (None: to nobody)."""
    global _current
    _current = record


def note(doing: Optional[str] = None, train: Optional[int] = None) -> None:
    """This rank made progress (see :meth:`ActivityRecord.note`)."""
    if _current is not None:
        _current.note(doing, train)


def note_signal(signum: int) -> None:
    """This rank received a stop signal (its supervisor need not pass one on)."""
    if _current is not None:
        _current.note_signal(signum)


def set_stall_timeout(seconds: float) -> None:
    """Seconds without progress before this rank is named on the console."""
    if _current is not None:
        _current.set_stall_timeout(seconds)


def add_temporaries(*paths: str) -> None:
    """More to remove if this rank dies hard (its supervisor removes it)."""
    if _current is not None:
        known = _current.read().temporaries
        _current.set_temporaries(known + tuple(str(p) for p in paths if str(p) not in known))
