"""The file system under the output: file modes, free space, and the temporaries of killed runs.

Files are created with the caller's umask (a proposal's group must read its small data);
a full disk ends a run with one line naming the folder and the space needed; hidden
temporaries carry ``<host>-<pid>`` in their names, so that the next run can remove those
of a process that no longer exists.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import shutil
import socket
from pathlib import Path

from smalldata.errors import SmallDataError

log = logging.getLogger(__name__)

#: Bytes kept free beyond what a write needs (HDF5 metadata, other writers).
SPACE_MARGIN = 1 << 20


def current_umask() -> int:
    """The process's file mode creation mask."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, then put it back
    os.umask(mask)
    return mask


def temp_owner() -> str:
    """``<host>-<pid>``: part of every temporary name, so that a later run can tell a dead run's leftovers."""
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


class DiskFullError(SmallDataError):
    """No space left where a file is written: names the folder, the space needed and the space free."""

    def __init__(self, folder: os.PathLike, needed_bytes: int):
        self.folder = Path(folder)
        self.needed_bytes = int(needed_bytes)
        free = free_bytes(self.folder)
        super().__init__(f"no space left in {self.folder}: about {_megabytes(needed_bytes)} needed there, "
                         f"{_megabytes(free)} free; free some space or write elsewhere")


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n < 10 * 2**30 else f"{n / 2**30:.1f} GB"


def free_bytes(folder: os.PathLike) -> int:
    """Bytes free for this user in the file system of ``folder``."""
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return 0


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or HDF5's error text) means the disk or the quota is full."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text or "errno = 28" in text


def check_free_space(folder: os.PathLike, needed_bytes: int) -> None:
    """:class:`DiskFullError` before writing when ``folder`` has less than ``needed_bytes`` free."""
    if free_bytes(folder) < needed_bytes:
        raise DiskFullError(folder, needed_bytes)


def clean_stale_temporaries(output: Path) -> list:
    """Remove the temporaries a killed run (SIGKILL, node failure) left next to ``output``.

    A temporary is removed when its name says it was made on this host by a process that
    no longer exists; any other is reported (it may belong to a run still going on
    another node). Returns the paths removed.
    """
    here = socket.gethostname().split(".")[0]
    removed = []
    for path in sorted(output.parent.glob(f".{glob.escape(output.name)}.*")):
        if not path.name.endswith((".parts", ".partial")):
            continue
        owner = path.name[len(output.name) + 2:].split(".")[0]
        host, _, pid = owner.rpartition("-")
        if host == here and pid.isdigit() and not _process_alive(int(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
            log.warning("removed %s, left by a killed run (process %s on %s)", path, pid, host)
        else:
            log.warning("%s is a temporary of another run of this output (%s) that may still be going on; "
                        "delete it if that run is over", path, owner if host else "owner unknown")
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_file(path: os.PathLike) -> None:
    """:class:`SmallDataError` unless ``path`` is a readable, complete smalldata output file."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [name for name in ("trainId", "meta") if name not in f]
            if missing or "run" not in f["meta"].attrs:
                raise SmallDataError(f"{path} is not a smalldata output (no {', '.join(missing) or '/meta run'}); "
                                     "give a file written by smd_producer")
    except OSError as exc:
        raise SmallDataError(f"cannot read {path} as HDF5 ({exc}); the file is truncated or not a smalldata "
                             "output: produce it again with smd_producer") from None
