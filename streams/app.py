"""Faust wiring: topics, the changelog-backed task table, the decision agent and web views.

Everything that decides lives in `monitor`; this module moves bytes between Kafka and
`monitor.pipeline.Pipeline` and publishes what it returns.
"""

from __future__ import annotations

import logging

import faust
import orjson

from monitor import metrics
from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.pipeline import Pipeline, dead_letter_headers
from monitor.policy import ALLOW, Policy
from monitor.profiles import build_engine

log = logging.getLogger("intentwatch.worker")


def create_app(settings: Settings) -> faust.App:
    fast = {}
    if settings.fast_rebalance:
        # Measured: Faust's 60 s defaults make every group join take ~30 s (shared NOTES.md).
        fast = {"broker_session_timeout": 2.0, "broker_heartbeat_interval": 0.5,
                    "broker_rebalance_timeout": 4.0}
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store="memory://",  # the table is rebuilt from its changelog topic on start
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        datadir=settings.data_dir,
        **fast,
    )

    def raw_topic(name: str):
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=settings.partitions)

    inputs = app.topic(settings.topic_intents, settings.topic_actions, key_type=bytes,
                       value_type=bytes, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    decisions_topic = raw_topic(settings.topic_decisions)
    alerts_topic = raw_topic(settings.topic_alerts)
    revocations_topic = raw_topic(settings.topic_revocations)
    dead_letters_topic = raw_topic(settings.topic_dead_letters)

    tasks = app.Table("tasks", default=None, partitions=settings.partitions,
                      key_type=str, value_type=dict)
    catalog = Catalog.load(settings.catalog) if settings.catalog else Catalog()
    engine = build_engine("full", catalog, Policy(settings.alert_at, settings.revoke_at),
                          store=tasks)
    pipeline = Pipeline(engine, settings.max_event_bytes)

    @app.agent(inputs)
    async def decide(stream):
        async for event in stream.events():
            message = event.message
            decisions, err = pipeline.handle(event.value, message.key)
            if err is not None:
                log.warning("dead letter from %s[%s]@%s: %s", message.topic, message.partition,
                            message.offset, err)
                await dead_letters_topic.send(
                    key=message.key, value=event.value,
                    headers=dead_letter_headers(err, message.topic, message.partition,
                                                message.offset))
                continue
            for d in decisions:
                key = d["task_id"].encode()
                body = orjson.dumps(d)
                await decisions_topic.send(key=key, value=body)
                if d["verdict"] != ALLOW:
                    await alerts_topic.send(key=key, value=body)
                if d["command"] is not None:
                    await revocations_topic.send(key=key, value=orjson.dumps(d["command"]))

    @app.page("/metrics")
    async def metrics_view(web, request):
        return web.bytes(metrics.exposition(),
                         content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def health_view(web, request):
        return web.json({"status": "ok", "app_id": settings.app_id})

    return app
