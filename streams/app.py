"""Faust wiring: topics, the changelog-backed task table, the decision agent and web views.

Everything that decides lives in `monitor`; this module moves bytes between Kafka and
`monitor.pipeline.Pipeline` and publishes what it returns.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping

import faust
import orjson

from monitor import metrics, signing
from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.pipeline import Pipeline, dead_letter_headers
from monitor.policy import ALLOW, Policy
from monitor.profiles import build_engine

from . import models
from .alerting import AlertForwarder
from .decide import register_decide_view

log = logging.getLogger("intentwatch.worker")


class JsonStore(MutableMapping):
    """The engine's task store over a Faust table of raw bytes: orjson in and out, so the
    changelog holds plain JSON and recovery needs no model classes."""

    def __init__(self, table):
        self.table = table

    def __getitem__(self, key: str) -> dict:
        return orjson.loads(self.table[key.encode()])

    def get(self, key: str, default=None):
        raw = self.table.get(key.encode())
        return default if raw is None else orjson.loads(raw)

    def __setitem__(self, key: str, value: dict) -> None:
        self.table[key.encode()] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self):
        return (k.decode() for k in self.table)

    def __len__(self) -> int:
        return len(self.table)


def command_signer(settings: Settings):
    """Signs revoke commands with the configured Ed25519 key (INTENTWATCH_SIGNING_KEY). Without
    one, commands go out unsigned, and consumers that verify will reject them."""
    if not settings.signing_key:
        print("intentwatch: no INTENTWATCH_SIGNING_KEY: revoke commands are NOT signed",
              file=sys.stderr, flush=True)
        return lambda command: command
    key = signing.load_private_key(settings.signing_key)
    kid = signing.key_id(key)
    return lambda command: signing.sign_command(command, key, kid)


def create_app(settings: Settings, model_snapshot: dict[str, bytes] | None = None) -> faust.App:
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

    # Raw bytes in the table and its changelog; the engine sees dicts through JsonStore.
    # (key_type=bytes makes Faust pick the raw codec for the table and its changelog.)
    tasks = app.Table("tasks", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes)
    # Delegation needs parents and children across partitions: every worker keeps all of it.
    registry = app.GlobalTable("registry", default=None, partitions=settings.partitions,
                               key_type=bytes, value_type=bytes)
    catalog = Catalog.load(settings.catalog) if settings.catalog else Catalog()
    engine = build_engine("full", catalog, Policy(settings.alert_at, settings.revoke_at),
                          store=JsonStore(tasks), registry=JsonStore(registry))
    if model_snapshot:
        engine.load_model_state(model_snapshot)
        # Faust configures logging later, when the worker starts: say it on stderr.
        print(f"intentwatch: restored learned models: {sorted(model_snapshot)}",
              file=sys.stderr, flush=True)
    pipeline = Pipeline(engine, settings.max_event_bytes)
    models_topic = app.topic(models.topic_name(settings), key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw", partitions=1)

    async def save_models() -> None:
        for name, blob in engine.model_state().items():
            await models_topic.send(key=name.encode(), value=models.encode(blob))

    @app.timer(interval=settings.model_snapshot_seconds)
    async def snapshot_models():
        await save_models()

    @app.on_before_shutdown.connect
    async def snapshot_on_stop(app, **kwargs):
        await save_models()

    sign = command_signer(settings)
    forwarder = AlertForwarder(settings.alertmanager_url) if settings.alertmanager_url else None
    if forwarder is not None:
        app.task(forwarder.run)

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
                    if forwarder is not None:
                        forwarder.offer(d)
                for command in ([d["command"]] if d["command"] else []) + d["cascade"]:
                    await revocations_topic.send(key=command["task_id"].encode(),
                                                 value=orjson.dumps(sign(command)))

    acks_topic = raw_topic(settings.topic_acks)

    @app.agent(acks_topic)
    async def measure_acks(stream):
        async for raw in stream:
            try:
                ack = orjson.loads(raw)
            except orjson.JSONDecodeError:
                metrics.ACKS.labels("malformed").inc()
                continue
            if isinstance(ack, dict):
                metrics.observe_ack(ack)

    @app.page("/metrics")
    async def metrics_view(web, request):
        return web.bytes(metrics.exposition(),
                         content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def health_view(web, request):
        return web.json({"status": "ok", "app_id": settings.app_id})

    register_decide_view(app, engine, tasks, settings)

    return app
