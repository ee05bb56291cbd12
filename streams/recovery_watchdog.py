"""Exit when Faust's table recovery stalls, so that the worker's supervisor starts a fresh one.

Seen in the join + leave fault test (CI three times; here about 1 run in 10 to 20): after one
worker left, the worker taking its partitions over began recovering them and never finished.
Faust warned "No event received for active tp ... since recovery start" every 5 s, with the
input streams paused until recovery ends: nothing was decided. Only the changelog partitions
new to that worker stalled; the ones it already held were read at once. Ruled out: standby
replicas (the worker now runs without them, and it stalled again), committed offsets on the
changelog partitions (none), aiokafka not fetching (Faust's own fetch check logged nothing).
The cause inside Faust 0.15.3 is not found. A fresh worker's recovery reads the same
partitions (the restart path, which the SIGKILL fault test takes in every run), and at least
once delivery makes a restart lose nothing: so the worker is crash-only here. It logs what it
waited for and exits with EXIT_RECOVERY_STALLED; Kubernetes, Compose (`restart:
unless-stopped`) or any supervisor starts it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from time import monotonic

log = logging.getLogger("intentwatch.recovery")

EXIT_RECOVERY_STALLED = 75  # EX_TEMPFAIL: start me again
CHECK_SECONDS = 5.0


def stalled_partitions(now: float, started_at: float | None, remaining: dict,
                       received_at: dict, stall_seconds: float) -> list:
    """Changelog partitions a recovery still has records to read from (`remaining` > 0) and
    has received none from for `stall_seconds` (counted from the recovery's start when none
    came yet). Times are monotonic seconds."""
    if started_at is None:
        return []
    return sorted(tp for tp, left in remaining.items()
                  if left > 0 and now - max(received_at.get(tp, started_at), started_at)
                  >= stall_seconds)


def check(app, stall_seconds: float, exit=os._exit) -> list:
    """One look at the app's recovery (Faust's private attributes: faust-streaming is
    pinned); on a stall, log it and exit. (No metric: the process ends before a scrape; the
    restart shows as the worker down and back, deploy/prometheus/rules.yml.)"""
    recovery = app.tables.recovery
    if not recovery.in_recovery:
        return []
    remaining = dict(recovery.active_remaining())
    stalled = stalled_partitions(monotonic(), recovery._recovery_started_at, remaining,
                                 dict(recovery._active_events_received_at), stall_seconds)
    if stalled:
        log.error("table recovery stalled: no record for %.0f s from %s (still to read: %s); "
                  "exiting with %d so that a fresh worker recovers them",
                  stall_seconds, ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled),
                  {f"{tp.topic}[{tp.partition}]": remaining[tp] for tp in stalled}, EXIT_RECOVERY_STALLED)
        for handler in logging.getLogger().handlers:
            handler.flush()
        exit(EXIT_RECOVERY_STALLED)  # (a hard exit: a clean stop waits on the stalled recovery)
    return stalled


async def watch(app, stall_seconds: float, interval: float = CHECK_SECONDS) -> None:
    """The check every `interval` seconds, from the app's start: not an app timer, since
    Faust starts those only once the first recovery has completed (a stall at start would go
    unseen)."""
    log.info("recovery watchdog on: a table recovery stalled for %.0f s exits the worker "
             "with %d", stall_seconds, EXIT_RECOVERY_STALLED)
    while True:
        await asyncio.sleep(interval)
        try:
            check(app, stall_seconds)
        except Exception:  # (Faust's internals changed?) the worker goes on, unwatched
            log.exception("recovery watchdog check failed")
