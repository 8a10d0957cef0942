"""Which received trains are used, and why the others are not: the stream's loss accounting.

Every rank keeps the same ledger and feeds it the same round of received train ids (an
allgather), so every rank takes the same decisions. A train is used once, in ascending order
of train id: a train seen before is a duplicate, a train older than one already used arrived
out of order (it was counted as part of a gap when the newer train was used; it moves from
the gap count to the out-of-order count), ids skipped between two used trains are a gap
(never received: dropped by the sender, the network or a slow consumer). A used train that
lacks a configured source is kept, as offline (its values are NaN, its module invalid), and
counted per source.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import h5py


class StreamLedger:
    """Decisions and loss counts over the rounds of a live run.

    Parameters
    ----------
    max_trains : int, optional
        Use at most this many trains; later ones are counted as ``after_max_trains``.
    """

    def __init__(self, max_trains: Optional[int] = None):
        self.max_trains = max_trains
        self.first: Optional[int] = None
        self.last: Optional[int] = None
        self.used = 0
        self.seen: set = set()
        self.counts: Counter = Counter()
        self.missing_sources: Counter = Counter()
        #: trains used per rank
        self.per_rank: Counter = Counter()

    def decide(self, received: Sequence[Sequence[Tuple[int, Sequence[str]]]]) -> List[List[bool]]:
        """Per rank, per received train: used or not.

        ``received[r]`` lists ``(train_id, missing configured sources)`` of rank ``r``'s round, or
        ``(train_id, missing sources, ids_from_previous)`` (the train's frame ids are those of an
        earlier train).
        """
        order = sorted((int(t[0]), r, i) for r, trains in enumerate(received) for i, t in enumerate(trains))
        decision = [[False] * len(trains) for trains in received]
        for tid, r, i in order:
            if tid in self.seen:
                self.counts["duplicate"] += 1
                continue
            self.seen.add(tid)
            if self.last is not None and tid < self.last:
                self.counts["out_of_order"] += 1
                if tid > self.first:
                    self.counts["gap"] -= 1
                continue
            if self.max_trains is not None and self.used >= self.max_trains:
                self.counts["after_max_trains"] += 1
                continue
            if self.last is not None and tid > self.last + 1:
                self.counts["gap"] += tid - self.last - 1
            self.first = tid if self.first is None else self.first
            self.last = tid
            self.used += 1
            self.per_rank[r] += 1
            decision[r][i] = True
            for source in received[r][i][1]:
                self.missing_sources[source] += 1
            if len(received[r][i]) > 2 and received[r][i][2]:
                self.counts["ids_from_previous_train"] += 1
        return decision

    @property
    def full(self) -> bool:
        """Whether ``max_trains`` trains are used."""
        return self.max_trains is not None and self.used >= self.max_trains

    def items(self) -> List[Tuple[str, int]]:
        """``(label, count)`` of every stream loss that occurred."""
        labels = {"gap": "trains never received (gaps in the train ids)",
                  "duplicate": "trains received twice (second copy not used)",
                  "out_of_order": "trains received after a later train (not used)",
                  "after_max_trains": "trains received after --max-trains (not used)",
                  "ids_from_previous_train": "trains whose stacked source had no frame ids (those of the previous "
                                             "train used)"}
        rows = [(labels[k], self.counts[k]) for k in labels if self.counts[k] > 0]
        rows += [(f"trains without source {s} (kept: values NaN, module invalid)", n)
                 for s, n in sorted(self.missing_sources.items())]
        return rows

    def lines(self) -> List[str]:
        """One console line per stream loss, as a fraction of the trains the stream spanned."""
        span = self.span()
        return [f"{label}: {n} of {span} ({100.0 * n / max(span, 1):.1f}%)" for label, n in self.items()]

    def span(self) -> int:
        """Train ids from the first to the last used train."""
        return 0 if self.first is None else int(self.last - self.first + 1)

    def attributes(self) -> Dict[str, int]:
        """The counts as ``/meta/losses`` attributes (``stream_<reason>``, ``stream_missing_source <src>``)."""
        out = {f"stream_{k}": int(self.counts[k]) for k in ("gap", "duplicate", "out_of_order", "after_max_trains",
                                                            "ids_from_previous_train")}
        out["stream_trains_used"] = int(self.used)
        out["stream_span"] = self.span()
        out["stream_trains_per_rank"] = [int(self.per_rank[r]) for r in range(max(self.per_rank, default=-1) + 1)]
        out.update({f"stream_missing_source {s}": int(n) for s, n in self.missing_sources.items()})
        return out

    def write(self, losses: h5py.Group) -> None:
        """Add the counts to ``/meta/losses``."""
        losses.attrs.update(self.attributes())
