"""The lag arithmetic of streams/lag.py: end offset minus one past the last record acked, else
the committed offset, else the earliest offset. (The live worker's lag series, and their
reaching 0, are checked through a real Prometheus in tests/test_prometheus.py; a live backlog
cannot be held steady long enough to check a number in it, so the cases are here, on a
stand-in for the two Faust fields and three calls the module reads.)"""

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from streams.lag import consumer_lag


class Consumer:
    def __init__(self, assigned, ends, earliest, acked, committed):
        self._assigned, self._ends, self._earliest = assigned, ends, earliest
        self._acked = defaultdict(list, acked)
        self._committed_offset = defaultdict(lambda: None, committed)

    def assignment(self):
        return set(self._assigned)

    async def highwaters(self, *tps):
        return {tp: self._ends[tp] for tp in tps}

    async def earliest_offsets(self, *tps):
        return {tp: self._earliest[tp] for tp in tps}


def test_lag_counts_from_acked_then_committed_then_earliest_offsets():
    a0, a1, a2, i0 = TP("actions", 0), TP("actions", 1), TP("actions", 2), TP("intents", 0)
    other = TP("iw-tasks-changelog", 0)  # assigned too, but not an input: no series
    consumer = Consumer(
        assigned=[a0, a1, a2, i0, other],
        ends={a0: 120, a1: 50, a2: 40, i0: 0, other: 999},
        earliest={a2: 10, i0: 0},
        acked={a0: [100, 103, 101]},        # acked since the last commit (not sorted)
        committed={a0: 90, a1: 50})         # a2, i0: never committed
    app = SimpleNamespace(consumer=consumer)
    lags = asyncio.run(consumer_lag(app, ("actions", "intents")))
    assert lags == {("actions", 0): 120 - 104, ("actions", 1): 0, ("actions", 2): 40 - 10,
                    ("intents", 0): 0}


def test_no_assigned_input_partition_gives_no_series():
    consumer = Consumer([TP("other", 0)], {}, {}, {}, {})
    assert asyncio.run(consumer_lag(SimpleNamespace(consumer=consumer), ("actions",))) == {}
