"""Two repairs to how Faust rewinds the input partitions when a rebalance ends.

Faust drops the records it fetched but had not handed to the agent when a rebalance ends (it
clears the streams' queues), and counts on rewinding every partition to its committed offset
first (Consumer.perform_seek) to read them again. Two things defeat that rewind, and each
lost records in the SIGKILL fault test (a worker killed mid-stream, the next one starting
while events flow): 20 to 827 decisions lost in 6 runs of 8, tens of records per partition,
each time a contiguous range.

1. Faust resumes the input partitions before it seeks, so its fetch loop goes on handing
   records on while the seek is under way. The read offset it keeps for each partition (it
   drops any record below it, as one already handed on) is set back to the committed offset
   by the seek, and then moved forward again by the records handed on after it: the records
   read again from the committed offset are dropped, up to there. So the fetch loop is
   stopped while the seek runs (the caller resumes it, as before), and a read offset it
   writes from then until it resumes, for a record it was still handing on, is ignored.
2. aiokafka's seek_to_committed seeks only partitions whose committed offset is above 0: a
   partition of a group that has not committed yet is not rewound at all. Such a partition
   goes back to its beginning, as auto_offset_reset="earliest" (the worker's setting)
   means. Changelog partitions are left alone: Faust's recovery reads them from positions
   of its own.

The records handed on twice by this are decided again with the same ids (at least once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import faust


async def seek_to_committed_or_beginning(consumer, rewind: Callable[[str], bool]) -> Mapping:
    """aiokafka's seek_to_committed, then each partition it left alone (no committed offset,
    or 0) of a topic `rewind` accepts seeked to its beginning. Returns the committed offsets,
    as seek_to_committed does. `consumer`: the aiokafka consumer."""
    committed = await consumer.seek_to_committed()
    unseeked = [tp for tp, offset in committed.items() if not offset and rewind(tp.topic)]
    if unseeked:
        await consumer.seek_to_beginning(*unseeked)
    return committed


class ReadOffsets(defaultdict):
    """Faust's per-partition read offsets (a defaultdict of None), whose writes are ignored
    while `held` (the fetch loop's, for a record it was handing on when the flow stopped).
    Faust's own seek writes them with update(), which is not held back."""

    def __init__(self):
        super().__init__(lambda: None)
        self.held = False

    def __setitem__(self, tp, offset) -> None:
        if not self.held:
            super().__setitem__(tp, offset)


def repair_seek(consumer, changelog_topics: Callable[[], set[str]]) -> None:
    """Installs both repairs on a Faust consumer (faust.transport.drivers.aiokafka.Consumer)
    that has not started: its fetch loop takes the read offsets' methods when it starts."""
    thread = consumer._thread  # the aiokafka consumer's thread (Faust has no accessor)
    read_offsets = consumer._read_offset = ReadOffsets()
    perform_seek, resume_flow = consumer.perform_seek, consumer.resume_flow

    def rewind(topic: str) -> bool:
        return topic not in changelog_topics()

    async def seek_to_committed():  # (what perform_seek calls)
        return await thread.call_thread(seek_to_committed_or_beginning,
                                        thread._ensure_consumer(), rewind)

    async def seek_with_the_flow_stopped() -> None:
        if consumer.flow_active:  # (not when the fetch loop itself seeks, its flow stopped)
            consumer.stop_flow()
            read_offsets.held = True
        await perform_seek()

    def resume() -> None:
        read_offsets.held = False
        resume_flow()

    consumer.seek_to_committed = seek_to_committed
    consumer.perform_seek = seek_with_the_flow_stopped
    consumer.resume_flow = resume


class RewindingApp(faust.App):
    """A Faust app whose consumer has the repairs above. It also starts
    `before_recovery_tasks` (coroutine functions) when it starts: Faust starts an app's own
    tasks and timers only after the first table recovery (streams.recovery_watchdog must
    watch that one too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.before_recovery_tasks: list = []

    async def on_start(self) -> None:
        await super().on_start()
        for task in self.before_recovery_tasks:
            self.add_future(task())

    def _new_consumer(self):
        consumer = super()._new_consumer()
        repair_seek(consumer, lambda: self.tables.changelog_topics)
        return consumer
