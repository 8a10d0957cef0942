"""The karabo-bridge client of one rank: trains in, one-line errors for a wrong endpoint or stream."""
from __future__ import annotations

import logging
import re
from typing import Optional, Sequence

from smalldata.errors import DataError, SmallDataError
from smalldata.live.layouts import LiveTrain, corrected_sources, decode_train, detect_layout, remember_ids

log = logging.getLogger(__name__)

SOCKETS = ("REQ", "SUB", "PULL")
_ENDPOINT = re.compile(r"^(tcp://[^:/\s]+:\d{1,5}|ipc://\S+)$")


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is a ZMQ endpoint a client can connect to, else :class:`SmallDataError`."""
    if not _ENDPOINT.match(endpoint or "") or endpoint.startswith("tcp://*"):
        raise SmallDataError(f"--bridge {endpoint!r} is not an endpoint to connect to; give tcp://HOST:PORT "
                             "(e.g. tcp://127.0.0.1:4545, or the facility's bridge host and port)")
    return endpoint


class BridgeSource:
    """Trains from a karabo bridge (``karabo_bridge.Client``).

    Parameters
    ----------
    endpoint : str
        ``tcp://HOST:PORT`` of the bridge.
    sock : str
        ``REQ`` (the trains are shared between the clients of a REP server), ``SUB`` or ``PULL``.
    timeout : float
        Seconds without a train after which the stream counts as ended.
    layout : str
        ``auto``, ``modules`` or ``stacked`` (see :mod:`smalldata.live.layouts`).
    """

    def __init__(self, endpoint: str, sock: str = "REQ", timeout: float = 10.0, layout: str = "auto"):
        from karabo_bridge import Client

        if sock not in SOCKETS:
            raise SmallDataError(f"--sock {sock!r}: use one of {', '.join(SOCKETS)}")
        self.endpoint = check_endpoint(endpoint)
        self.sock = sock
        self.timeout = float(timeout)
        self.layout = None if layout == "auto" else layout
        try:
            self.client = Client(endpoint, sock=sock, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - zmq raises its own errors for a malformed endpoint
            raise SmallDataError(f"--bridge {endpoint}: cannot connect ({exc}); give tcp://HOST:PORT") from None
        #: messages received
        self.received = 0
        self._previous_ids: dict = {}

    def next(self) -> Optional[LiveTrain]:
        """The next train, or None when no train came within the timeout (the stream ended)."""
        try:
            data, meta = self.client.next()
        except TimeoutError:
            return None
        self.received += 1
        if self.layout is None:
            self.layout = detect_layout(data)
            if self.layout is None:
                self._refuse(data)
        return decode_train(data, meta, self.layout, self._previous_ids)

    def remember(self, train: LiveTrain) -> None:
        """Take the frame ids of ``train`` (e.g. the set-up train) as the last known ones."""
        remember_ids(train, self._previous_ids)

    def no_train(self, waited: float) -> None:
        """Raise the one-line error for a stream that sent no train in ``waited`` seconds."""
        raise DataError(f"no train from {self.endpoint} within {waited:g} s; check the endpoint "
                            "(--bridge tcp://HOST:PORT) and that the bridge is sending (--sock "
                            f"{self.sock} must match the server: REQ for REP, SUB for PUB, PULL for PUSH)")

    def _refuse(self, sources: Sequence[str]) -> None:
        corrected = corrected_sources(sources)
        if corrected:
            raise DataError(f"stream {self.endpoint} sends corrected detector data ({', '.join(corrected)}); the "
                            "producer calibrates raw frames itself: point --bridge at a bridge of the raw DSSC "
                            "sources (SCS_DET_DSSC1M-1/DET/<m>CH0:xtdf)")
        raise DataError(f"stream {self.endpoint} carries no DSSC source (it sends {', '.join(sorted(sources))}); "
                        "point --bridge at a bridge that sends SCS_DET_DSSC1M-1/DET/<m>CH0:xtdf, "
                        "SCS_DET_DSSC1M-1/DET/APPEND or SCS_CDIDET_DSSC/CAL/APPEND_RAW")

    def close(self) -> None:
        """Close the client's socket."""
        self.client._context.destroy(linger=0)
