"""Learned model state on Kafka: a compacted topic holds the latest snapshot of each learned
detector, so a restarted worker resumes with what it had learned.

Snapshots are taken every INTENTWATCH_MODEL_SNAPSHOT_SECONDS and when the worker stops; a worker
killed outright loses at most what it learned since the last one, and relearns part of it from
the events it re-reads. One worker per app id is assumed: several would overwrite each other's
snapshots (each keeps its own models).
"""

from __future__ import annotations

import time
import zlib

from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.config import Settings

from .kafka_security import kafka_client_options


def topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-models"


def encode(blob: bytes) -> bytes:
    return zlib.compress(blob, 6)


async def load_snapshot(settings: Settings, timeout: float = 30.0) -> dict[str, bytes]:
    """The latest snapshot per detector name, read from the start of the topic to its end."""
    part = TopicPartition(topic_name(settings), 0)  # the topic has one partition
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, bytes] = {}
    try:
        consumer.assign([part])
        await consumer.seek_to_beginning(part)
        end = (await consumer.end_offsets([part]))[part]
        deadline = time.monotonic() + timeout
        while await consumer.position(part) < end:
            if time.monotonic() > deadline:
                raise TimeoutError("model snapshot topic could not be read to its end")
            for records in (await consumer.getmany(part, timeout_ms=200)).values():
                for r in records:
                    latest[r.key.decode()] = zlib.decompress(r.value)
    finally:
        await consumer.stop()
    return latest
