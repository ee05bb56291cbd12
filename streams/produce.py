"""Publish a recorded trace (JSON lines) to the input topics, keyed by task id.

Intents go to the intents topic, every other line (actions, task ends, and lines that are not
valid events at all) to the actions topic: routing must not filter, so the worker sees bad
records too and dead-letters them with a reason.
"""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from monitor.config import Settings

from .kafka_security import check_broker, kafka_client_options


def route(raw: bytes, settings: Settings) -> tuple[str, bytes | None]:
    """(topic, key) for one line of a trace."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return settings.topic_actions, None
    if not isinstance(event, dict):
        return settings.topic_actions, None
    task_id = event.get("task_id")
    key = task_id.encode() if isinstance(task_id, str) else None
    topic = settings.topic_intents if event.get("type") == "task.intent" else settings.topic_actions
    return topic, key


async def ensure_topics(settings: Settings, names: list[str], partitions: int | None = None,
                        config: dict | None = None) -> None:
    await check_broker(settings)  # the first contact of most commands: fail with the cause
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions or settings.partitions, settings.replication,
                        topic_configs=config or {})
               for n in names if n not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def produce(lines, settings: Settings, progress=None) -> dict:
    """Send every line; wait for all acknowledgements; return counts per topic."""
    await ensure_topics(settings, [settings.topic_intents, settings.topic_actions])
    producer = AIOKafkaProducer(**kafka_client_options(settings), linger_ms=5,
                                enable_idempotence=True)
    await producer.start()
    counts: dict[str, int] = {}
    try:
        futures = []
        for _, raw in lines:
            topic, key = route(raw, settings)
            futures.append(await producer.send(topic, raw, key=key))
            counts[topic] = counts.get(topic, 0) + 1
            if progress is not None:
                progress(sum(counts.values()))
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return counts
