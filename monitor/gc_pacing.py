"""Pacing of Python's cyclic garbage collector for a process that decides events.

A worker holds many long-lived objects (task states, cached readings of tool results, models)
and allocates a few short-lived ones per event. CPython's collector scans every tracked object
at each full collection, and triggers one whenever the survivors grow by a quarter, so its cost
per event grows with what the process holds: on the scaled trace it was about a quarter of the
rules engine's time (14.3 us/event against 10.3 with the collector off), for nothing, as the
engine's plain-data states hold no reference cycles.

So every FREEZE_EVERY events the survivors are frozen (gc.freeze: moved where collections do
not scan them; they are still freed by reference counting as usual), and young collections run
every YOUNG_THRESHOLD allocations instead of 700. What this gives up: a frozen object that
later becomes part of unreachable reference cycle is not reclaimed until the next full
collection, which runs every FULL_EVERY events (unfreeze, collect, freeze again).

Process-wide, so it is paced once per process whatever the number of pipelines (eval runs two).
"""

from __future__ import annotations

import gc

FREEZE_EVERY = 10_000
YOUNG_THRESHOLD = 10_000
FULL_EVERY = 10_000_000

_since_freeze = 0
_since_full = 0
_started = False


def events_decided(n: int) -> None:
    global _since_freeze, _since_full, _started
    if not _started:
        _started = True
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    _since_freeze += n
    _since_full += n
    if _since_full >= FULL_EVERY:
        _since_full = _since_freeze = 0
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    elif _since_freeze >= FREEZE_EVERY:
        _since_freeze = 0
        gc.freeze()
