"""Consumer lag of the worker's input partitions, for intentwatch_consumer_lag_records.

Lag is the partition's end offset minus the worker's processed offset: one past the highest
record it has acked (decided, its outputs and state stored), else the offset it last committed,
else the partition's earliest offset (nothing read yet). It is not the group's committed lag
that Kafka's own tools show: Faust commits every few seconds, and a worker deciding thousands
of events a second would look thousands of records behind between commits.

Faust has no public accessor for acked and committed offsets: `_acked` and `_committed_offset`
of its consumer are read (faust-streaming is pinned). The end offsets come from the broker
(ListOffsets), not from the fetcher's last highwater, which goes stale exactly when a backlog
stops the fetcher.
"""

from __future__ import annotations

import logging

import faust

from monitor import metrics

log = logging.getLogger("intentwatch.lag")

REFRESH_SECONDS = 5.0   # how often the worker's timer refreshes the lag and active tasks


def processed_offsets(consumer, partitions) -> dict:
    """TP -> one past the last record processed (None when unknown)."""
    done = {}
    for tp in partitions:
        acked = consumer._acked.get(tp)
        done[tp] = max(acked) + 1 if acked else consumer._committed_offset.get(tp)
    return done


async def consumer_lag(app: faust.App, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> records not processed yet, for the assigned partitions of
    `topics`."""
    consumer = app.consumer
    partitions = sorted(tp for tp in consumer.assignment() if tp.topic in topics)
    if not partitions:
        return {}
    ends = await consumer.highwaters(*partitions)
    done = processed_offsets(consumer, partitions)
    unknown = [tp for tp in partitions if done[tp] is None]
    if unknown:
        done.update(await consumer.earliest_offsets(*unknown))
    return {(tp.topic, tp.partition): max(0, ends[tp] - done[tp])
            for tp in partitions if ends.get(tp) is not None and done.get(tp) is not None}


async def refresh(app: faust.App, topics: tuple[str, ...], retention) -> None:
    """The worker's periodic gauges: consumer lag and running tasks. Never raises: a failed
    refresh (a rebalance under way, the broker away) keeps the last values and is logged."""
    metrics.ACTIVE_TASKS.set(retention.running())
    try:
        metrics.set_consumer_lag(await consumer_lag(app, topics))
    except Exception:  # metrics must not stop the worker
        log.warning("consumer lag not refreshed", exc_info=True)
