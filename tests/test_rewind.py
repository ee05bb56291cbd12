"""streams/rewind.py: the seek at the end of a rebalance. On the real broker: a partition
without a committed offset goes back to its beginning, one with an offset to it, and a
changelog partition is left where it is. (The faults it repairs: tests/test_faults.py.)"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.rewind import ReadOffsets, seek_to_committed_or_beginning


def test_read_offsets_held_ignore_writes_but_not_faust_s_own_update():
    offsets = ReadOffsets()
    assert offsets["tp"] is None  # (a defaultdict of None, as Faust's)
    offsets["tp"] = 5
    offsets.held = True
    offsets["tp"] = 9  # the fetch loop, for a record it was handing on
    assert offsets["tp"] == 5
    offsets.update({"tp": 2})  # Faust's perform_seek
    assert offsets["tp"] == 2
    offsets.held = False
    offsets["tp"] = 3
    assert offsets["tp"] == 3


@pytest.mark.kafka
def test_uncommitted_partitions_rewind_to_their_beginning(kafka, tmp_path):
    name = f"rewind-{tmp_path.name[-12:]}"
    topics = [f"{name}.input", f"{name}-changelog"]

    async def scenario():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        for topic in topics:
            for partition in (0, 1):
                for i in range(10):
                    await producer.send_and_wait(topic, b"%d" % i, partition=partition)
        await producer.stop()
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=kafka, group_id=name,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            read = 0
            while read < 40:  # every record, so every position is at the end (10)
                batch = await consumer.getmany(timeout_ms=1000)
                read += sum(len(records) for records in batch.values())
            committed = TopicPartition(topics[0], 1)
            await consumer.commit({committed: 4})
            got = await seek_to_committed_or_beginning(consumer,
                                                       lambda t: not t.endswith("-changelog"))
            positions = {(tp.topic, tp.partition): await consumer.position(tp)
                         for tp in consumer.assignment()}
            return got, positions
        finally:
            await consumer.stop()

    committed, positions = asyncio.run(scenario())
    assert positions[(topics[0], 0)] == 0   # no committed offset: its beginning
    assert positions[(topics[0], 1)] == 4   # its committed offset
    assert positions[(topics[1], 0)] == 10  # a changelog: left alone
    assert positions[(topics[1], 1)] == 10
    assert committed[TopicPartition(topics[0], 1)] == 4
    assert committed[TopicPartition(topics[0], 0)] is None
