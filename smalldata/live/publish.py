"""``--publish``: the reduced rows of every train re-published as a karabo-bridge server (rank 0).

Other online tools (EXtra-foam, a notebook with ``karabo_bridge.Client``) can then watch the
small data instead of the detector. One message per train with one source,
:data:`SOURCE`, whose keys are the output's per-event datasets with dots for slashes
(``dssc.roi_sum``, ``xgm.sa3_intensity``, ``trainId``, ...), each an array of the train's frames.
The socket is a PUB socket by default: the producer never waits for a subscriber (a subscriber
too slow for the stream misses trains, as with any PUB bridge).
"""
from __future__ import annotations

import logging
import re
import time
from typing import Mapping

import numpy as np

from smalldata.errors import SmallDataError
from smalldata.plugin.ragged import is_ragged

log = logging.getLogger(__name__)

#: The source name of the published small data.
SOURCE = "SMALLDATA/LIVE/OUTPUT"
_BIND = re.compile(r"^tcp://(\*|[^:/\s]+):\d{1,5}$")


class Publisher:
    """A karabo-bridge server of the reduced rows.

    Parameters
    ----------
    endpoint : str
        ``tcp://*:PORT`` (every interface) or ``tcp://HOST:PORT`` to bind.
    sock : str
        ``PUB`` (default, never blocks) or ``PUSH``.
    """

    def __init__(self, endpoint: str, sock: str = "PUB"):
        from karabo_bridge.server import Sender

        if not _BIND.match(endpoint or ""):
            raise SmallDataError(f"--publish {endpoint!r} is not an endpoint to bind; give tcp://*:PORT "
                                 "(or tcp://127.0.0.1:PORT for this machine only)")
        try:
            self.sender = Sender(endpoint, sock=sock)
        except Exception as exc:  # noqa: BLE001 - zmq's errors (address in use, bad interface) become one line
            raise SmallDataError(f"--publish {endpoint}: cannot bind ({exc}); choose another port") from None
        self.endpoint = endpoint
        #: trains published
        self.sent = 0

    def publish(self, rows: Mapping[str, object]) -> None:
        """Send the rows of one round (in train order), one message per train."""
        tids = np.asarray(rows["trainId"])
        if not len(tids):
            return
        keys = [k for k, v in rows.items() if not is_ragged(v) and np.asarray(v).ndim <= 3]
        starts = np.flatnonzero(np.r_[True, tids[1:] != tids[:-1]])
        stops = np.r_[starts[1:], len(tids)]
        now = time.time()
        for a, b in zip(starts, stops):
            tid = int(tids[a])
            data = {k.replace("/", "."): np.ascontiguousarray(np.asarray(rows[k])[a:b]) for k in keys}
            meta = {SOURCE: {"source": SOURCE, "timestamp": now, "timestamp.sec": str(int(now)),
                             "timestamp.frac": str(int((now % 1) * 1e18)), "timestamp.tid": tid}}
            self.sender.send({SOURCE: data}, meta)
            self.sent += 1

    def close(self) -> None:
        """Close the server socket."""
        self.sender.server_socket.close(linger=0)
        self.sender.zmq_context.destroy(linger=0)
