"""A batch's output records, sent as one Kafka record batch per topic and partition.

The worker's outputs for a batch of input records (decisions, alerts, revoke commands, dead
letters, changelog records) are collected here, grouped by topic and partition in the order
they were added, and handed to aiokafka as ready-made record batches (create_batch /
send_batch). One send per record cost about 10 us in aiokafka (a coroutine, the partitioner,
a future per record): 2 to 3 records per event made it a large part of the worker's time.

A record's partition is the caller's when given (the worker gives the partition of the input
record for the outputs of the input's own task), else aiokafka's default partitioner (murmur2
of the key), as a plain send would pick.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka.partitioner import DefaultPartitioner

Record = tuple[bytes | None, bytes | None, list]   # key, value, headers


class Outbox:
    def __init__(self, producer):
        """`producer`: the aiokafka producer (AIOKafkaProducer)."""
        self.producer = producer
        self.partitioner = DefaultPartitioner()
        self.records: dict[tuple[str, int], list[Record]] = defaultdict(list)

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            partition: int | None = None, headers: list | None = None) -> None:
        if partition is None:
            every = sorted(self.producer.client.cluster.partitions_for_topic(topic) or ())
            if not every:
                raise KeyError(f"no metadata for topic {topic!r}")
            available = sorted(
                self.producer.client.cluster.available_partitions_for_topic(topic) or ())
            partition = self.partitioner(key, every, available)
        self.records[topic, partition].append((key, value, headers or []))

    def partitions(self, topic: str) -> int:
        return len(self.producer.client.cluster.partitions_for_topic(topic) or ())

    async def send(self) -> None:
        """Send every record added, then wait until the broker has them all."""
        records, self.records = self.records, defaultdict(list)
        futures = await asyncio.gather(*(self._send(topic, partition, batch)
                                         for (topic, partition), batch in records.items()))
        await asyncio.gather(*(f for fs in futures for f in fs))

    async def _send(self, topic: str, partition: int, records: list[Record]) -> list:
        """The record batches of one partition, in order (aiokafka queues one at a time)."""
        futures, batch = [], self.producer.create_batch()
        for key, value, headers in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                batch.close()  # full: send it, go on in a new one (a first record always fits)
                futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                batch = self.producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        batch.close()
        futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures
