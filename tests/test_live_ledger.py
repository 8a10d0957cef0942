"""The stream's loss accounting against an independent count of planted duplicates, reorderings and gaps."""
import numpy as np

from smalldata.live.ledger import StreamLedger


def test_ledger_counts_planted_losses():
    rng = np.random.default_rng(3)
    ids = np.arange(1000, 1200)
    dropped = set(rng.choice(ids[1:-1], 15, replace=False).tolist())
    sent = [int(t) for t in ids if t not in dropped]
    duplicated = rng.choice(sent, 6, replace=False).tolist()
    late = sorted(rng.choice(sorted(dropped), 4, replace=False).tolist())
    stream = sent + duplicated + late  # duplicates and late trains arrive after everything else
    ledger = StreamLedger()
    rounds = [stream[i:i + 7] for i in range(0, len(stream), 7)]
    used = []
    for chunk in rounds:  # two ranks: alternate trains of the chunk
        per_rank = [[(t, []) for t in chunk[0::2]], [(t, ["SRC"] if t % 50 == 0 else []) for t in chunk[1::2]]]
        decision = ledger.decide(per_rank)
        used += [t for r in range(2) for (t, _), ok in zip(per_rank[r], decision[r]) if ok]
    assert sorted(used) == sent and len(set(used)) == len(used)
    assert ledger.counts["duplicate"] == len(duplicated)
    assert ledger.counts["out_of_order"] == len(late)
    assert ledger.counts["gap"] == len(dropped) - len(late)  # late trains are no longer counted as missing
    assert ledger.used == len(sent) and ledger.span() == len(ids)
    odd_50 = [t for i, chunk in enumerate(rounds) for t in chunk[1::2] if t % 50 == 0 and t in sent]
    assert ledger.missing_sources["SRC"] == len(set(odd_50))
    assert sum(ledger.per_rank.values()) == len(sent)


def test_ledger_max_trains_and_order_within_a_round():
    ledger = StreamLedger(max_trains=3)
    decision = ledger.decide([[(12, []), (10, [])], [(11, []), (13, [])]])
    assert decision == [[True, True], [True, False]]  # 10, 11 and 12 used; 13 beyond the limit
    assert ledger.used == 3 and ledger.full and ledger.counts["after_max_trains"] == 1
    assert ledger.counts["gap"] == 0 and ledger.lines()[0].startswith("trains received after --max-trains (not used): 1 of 3")
