"""Faust wiring: topics, the changelog-backed task table, the decision agent and web views.

Everything that decides lives in `monitor`; this module moves bytes between Kafka and
`monitor.pipeline.Pipeline` and publishes what it returns.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections import OrderedDict
from collections.abc import MutableMapping

import faust
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faust.streams import _current_event, current_event  # (no public setter)

from monitor import metrics, signing
from monitor.activity import ActivityRecorder
from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.pipeline import Pipeline, dead_letter_headers
from monitor.policy import ALLOW, Policy
from monitor.profiles import build_engine

from . import lag, models, recovery_watchdog
from .alerting import AlertForwarder
from .dashboard import register_dashboard
from .decide import register_decide_view
from .kafka_security import faust_credentials
from .outbox import Outbox
from .probes import register_readiness_view
from .rewind import RewindingApp

log = logging.getLogger("intentwatch.worker")

class JsonStore(MutableMapping):
    """The engine's task store over a Faust table of raw bytes: orjson in and out, so the
    changelog holds plain JSON and recovery needs no model classes.

    Reads: the values decoded recently are cached (`cached` of them, least recently used
    dropped), each with the bytes it was decoded from, and a read returns the cached value
    while the table still holds those very bytes. So a task's state is decoded once, not at
    every event, and a value the table got from elsewhere (recovery after a rebalance, another
    worker's write to a global table) is decoded again. The engine writes back every value it
    changes, so handing out the cached object is safe.

    Writes: a value written is kept until the worker calls `changes()`, once per batch: then
    each key written is encoded once (a task written by several records of the batch, once),
    stored in the table's local store, and returned as its changelog record, which the worker
    sends with the batch's outputs and waits for before it acks the batch. (Faust's own path,
    Table.__setitem__: its producer buffer, one produce request per record, measured about
    0.4 ms per write here, half of the worker's time per event.) Recovery reads the changelog
    as before.

    The record's partition: `by_key`, the partition of the record being decided when the key
    is that record's own (a task's state goes where its input goes, whatever partitioner the
    producers used), else None (the producer's partitioner, murmur2, as the producers are
    assumed to use: so that freeing another task (retention) leaves its tombstone beside its
    state); not by_key, the partition of the record being decided, as Faust's tables do, which
    a global table needs: a worker follows live only the partitions it does not own, i.e. the
    ones other workers write to.
    """

    def __init__(self, table, by_key: bool, cached: int = 10_000):
        self.table = table
        self.by_key = by_key
        self.changelog = table.changelog_topic.get_topic_name()
        self.cached = cached
        self._cache: OrderedDict[str, tuple[bytes, dict]] = OrderedDict()
        self._written: dict[str, tuple[dict, int | None]] = {}   # key -> (value, partition)
        self._deleted: list[tuple[bytes, None, int | None]] = []

    def __getitem__(self, key: str) -> dict:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default=None):
        written = self._written.get(key)
        if written is not None:
            return written[0]
        raw = self.table.data.get(key.encode())
        if raw is None:
            return default
        hit = self._cache.get(key)
        if hit is not None and hit[0] is raw:
            self._cache.move_to_end(key)
            return hit[1]
        value = orjson.loads(raw)
        self._remember(key, raw, value)
        return value

    def _remember(self, key: str, raw: bytes, value: dict) -> None:
        self._cache[key] = (raw, value)
        self._cache.move_to_end(key)
        if len(self._cache) > self.cached:
            self._cache.popitem(last=False)

    def __setitem__(self, key: str, value: dict) -> None:
        self._written[key] = (value, self._partition(key))

    def __delitem__(self, key: str) -> None:
        raw_key, partition = key.encode(), self._partition(key)
        was_written = self._written.pop(key, None) is not None
        self._cache.pop(key, None)
        if self.table.data.pop(raw_key, None) is None and not was_written:
            raise KeyError(key)
        self._deleted.append((raw_key, None, partition))

    def __iter__(self):
        written = [k for k in self._written if k.encode() not in self.table.data]
        return iter([k.decode() for k in self.table.data] + written)

    def __len__(self) -> int:
        return len(self.table.data) + sum(k.encode() not in self.table.data
                                          for k in self._written)

    def _partition(self, key: str) -> int | None:
        event = current_event()
        if self.by_key:
            return event.message.partition if event is not None and \
                event.message.key == key.encode() else None
        if event is None:  # as Faust's tables refuse it: no partition to put the record in
            raise RuntimeError(f"{self.table.name}: changed outside of a record being decided")
        return event.message.partition

    def changes(self) -> list[tuple[bytes, bytes | None, int | None]]:
        """(key, value or None for a delete, partition) of the changes since the last call:
        deletes first (a key deleted and written again in the batch is written after)."""
        changes, self._deleted = self._deleted, []
        for key, (value, partition) in self._written.items():
            # A copy: orjson's bytes keep its whole 16 KB output buffer (measured: 16,266 bytes
            # held per 1.5 KB state), and the table holds them for as long as the task lives.
            raw_key, raw = key.encode(), bytes(memoryview(orjson.dumps(value)))
            self.table.data[raw_key] = raw
            self._remember(key, raw, value)
            changes.append((raw_key, raw, partition))
        self._written = {}
        return changes


def as_current_events(events):
    """(value, key, partition) of each Faust event, each made Faust's current event while it is
    decided (the partition is the engine's lane: a task's intent and actions have the same
    one, the topics being co-partitioned; see monitor.intent_wait),
    as Faust's own per-event iterator does: a registry write's changelog record goes to the
    partition of the current event (JsonStore, like Faust's tables), which must be the
    record's own. (noack_take leaves no current event in the agent's task: it buffers the
    events in another task.)"""
    for event in events:
        _current_event.set(weakref.ref(event))
        yield event.value, event.message.key, event.message.partition
    _current_event.set(None)


def worker_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The worker's Ed25519 key (INTENTWATCH_SIGNING_KEY), which signs its revoke commands and
    its model snapshots; None without one."""
    return signing.load_private_key(settings.signing_key) if settings.signing_key else None


def command_signer(key: Ed25519PrivateKey | None):
    """Signs revoke commands with the worker's key. Without one, commands go out unsigned, and
    consumers that verify will reject them; model snapshots go out unsigned too, and any
    snapshot record is loaded (streams.models)."""
    if key is None:
        print("intentwatch: no INTENTWATCH_SIGNING_KEY: revoke commands and model snapshots "
              "are NOT signed, and model snapshots are restored unverified", file=sys.stderr,
              flush=True)
        return lambda command: command
    kid = signing.key_id(key)
    return lambda command: signing.sign_command(command, key, kid)


def new_app(settings: Settings) -> faust.App:
    """The worker's Faust app, its agents not yet added: consumer, producer and web settings.
    (Also the base of the benchmark's Faust floor, benchmarks.faust_floor, which must run with
    the worker's settings to be its floor.)"""
    fast = {}
    if settings.fast_rebalance:
        # Measured: Faust's 60 s defaults make every group join take ~30 s (shared NOTES.md).
        fast = {"broker_session_timeout": 2.0, "broker_heartbeat_interval": 0.5,
                    "broker_rebalance_timeout": 4.0}
    return RewindingApp(
        settings.app_id,
        broker=settings.broker,
        store="memory://",  # the table is rebuilt from its changelog topic on start
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_host=settings.web_host,  # advertised to the group: /v1/decide forwarding
        web_bind=settings.web_bind,
        datadir=settings.data_dir,
        broker_credentials=faust_credentials(settings),  # TLS, SASL (None: plaintext)
        **fast,
    )


def input_topics(app: faust.App, settings: Settings):
    """The intents and actions topics as one Faust topic of raw bytes (decoded by the pipeline)."""
    return app.topic(settings.topic_intents, settings.topic_actions, key_type=bytes,
                     value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=settings.partitions)


def create_app(settings: Settings, model_snapshot: models.Snapshot | None = None) -> faust.App:
    app = new_app(settings)
    key = worker_key(settings)

    def raw_topic(name: str):
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=settings.partitions)

    inputs = input_topics(app, settings)

    # Raw bytes in the table and its changelog; the engine sees dicts through JsonStore.
    # (key_type=bytes makes Faust pick the raw codec for the table and its changelog.)
    tasks = app.Table("tasks", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes)
    # Delegation needs parents and children across partitions: every worker keeps all of it.
    registry = app.GlobalTable("registry", default=None, partitions=settings.partitions,
                               key_type=bytes, value_type=bytes)
    catalog = Catalog.load(settings.catalog) if settings.catalog else Catalog()
    stores = (JsonStore(tasks, by_key=True, cached=settings.state_cache),
              JsonStore(registry, by_key=False, cached=settings.state_cache))
    engine = build_engine("full", catalog, Policy(settings.alert_at, settings.revoke_at),
                          store=stores[0], registry=stores[1],
                          allowed_lateness=settings.allowed_lateness_seconds)
    engine.retention.seconds = settings.retention_seconds
    tasks.on_recover(engine.retention.on_recover)  # index the partitions a rebalance brings
    models.restore(engine, model_snapshot or models.Snapshot({}, []))
    pipeline = Pipeline(engine, settings.max_event_bytes)
    recorder = ActivityRecorder()  # what the dashboard shows
    models_topic = app.topic(models.topic_name(settings), key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw", partitions=1)

    async def save_models() -> None:
        # The state is taken between batches (a consistent snapshot); compressing it (about
        # 25 ms) runs in a thread, zlib releasing the GIL, so decisions go on meanwhile.
        for name, blob in engine.model_state().items():
            value, headers = await asyncio.to_thread(models.encode, name, blob, key)
            await models_topic.send(key=name.encode(), value=value, headers=headers)
            metrics.model_snapshotted(name, len(blob), len(value))

    @app.timer(interval=settings.model_snapshot_seconds)
    async def snapshot_models():
        await save_models()

    @app.on_before_shutdown.connect
    async def snapshot_on_stop(app, **kwargs):
        await save_models()

    app.before_recovery_tasks.append(
        lambda: recovery_watchdog.watch(app, settings.recovery_stall_seconds))

    @app.timer(interval=lag.REFRESH_SECONDS)
    async def refresh_gauges():
        await lag.refresh(app, (settings.topic_intents, settings.topic_actions), engine.retention)

    sign = command_signer(key)
    forwarder = AlertForwarder(settings.alertmanager_url) if settings.alertmanager_url else None
    if forwarder is not None:
        app.task(forwarder.run)

    async def publish(outbox: Outbox, events, results) -> None:
        """Send each record's outputs, in record order, and the batch's changelog records,
        then wait until the broker has them all: a record is acked (and its offset committed)
        only once its outputs and state are stored. The outputs of a record's own task go to
        the record's partition (the output topics have as many partitions as the inputs, so
        a task's records stay together and in order); those of other tasks (a cascade, a
        freed task's held actions) go by key, as the producers' default partitioner puts
        them."""
        recorder.record((e.value, decisions) for e, (decisions, _) in zip(events, results))
        outputs = (settings.topic_decisions, settings.topic_alerts, settings.topic_revocations)
        inputs = outbox.partitions(settings.topic_actions)
        copartitioned = all(outbox.partitions(t) == inputs for t in outputs)
        for event, (decisions, err) in zip(events, results, strict=True):
            message = event.message
            if err is not None:
                log.warning("dead letter from %s[%s]@%s: %s", message.topic, message.partition,
                            message.offset, err)
                outbox.add(settings.topic_dead_letters, message.key, event.value,
                           headers=dead_letter_headers(err, message.topic, message.partition,
                                                       message.offset))
                continue
            own = message.partition if copartitioned else None
            for d in decisions:
                key = d["task_id"].encode()
                partition = own if key == message.key else None
                body = orjson.dumps(d)
                outbox.add(settings.topic_decisions, key, body, partition)
                if d["verdict"] != ALLOW:
                    outbox.add(settings.topic_alerts, key, body, partition)
                    if forwarder is not None:
                        forwarder.offer(d)
                for command in ([d["command"]] if d["command"] else []) + d["cascade"]:
                    command_key = command["task_id"].encode()
                    outbox.add(settings.topic_revocations, command_key,
                               orjson.dumps(sign(command)),
                               partition if command_key == key else None)
        # Outputs first, then the state that records them: had both gone at once, a crash
        # could store a task's "revoked" state without its revoke command, and the record,
        # decided again from that state, would issue none (RELIABILITY.md). This way a crash
        # in between only repeats outputs, with the same ids.
        await outbox.send()
        for store in stores:
            for key, value, partition in store.changes():
                outbox.add(store.changelog, key, value, partition)
        await outbox.send()

    async def track_topics(producer) -> None:
        """aiokafka refreshes metadata only for the topics its client tracks, and tracks one
        only once a send found it unknown: a topic known from an earlier refresh of all topics
        drops out at the next partial refresh, and records queued for it wait for a leader
        that never comes (seen with the changelog topics: the batch never completed). So track
        every topic the agent writes, and the input topics, whose partition counts publish()
        compares with the outputs'."""
        client = producer._ensure_producer().client  # (Faust has no public accessor)
        await asyncio.gather(*(client.add_topic(topic) for topic in (
            settings.topic_decisions, settings.topic_alerts, settings.topic_revocations,
            settings.topic_dead_letters, models_topic.get_topic_name(),
            *(store.changelog for store in stores),
            settings.topic_intents, settings.topic_actions)))  # (read: their partition counts)

    @app.agent(inputs)
    async def decide(stream):
        producer = await app.maybe_start_producer()
        await track_topics(producer)
        outbox = Outbox(producer._ensure_producer())  # (aiokafka's; Faust has no accessor)
        # A batch of records per iteration: Faust's per-event agent path and an awaited send
        # per output cost more than deciding a simple event. noack_take leaves acking to us.
        async for batch in stream.noack_take(settings.batch_max, within=settings.batch_wait):
            # Records fetched before a rebalance are read again from the committed offset by
            # whoever owns their partition now: skip them, unacked (Faust's own per-event
            # iterator skips them too).
            generation = app.consumer_generation_id
            events = [e for e in batch if e.message.generation_id == generation]
            if len(events) < len(batch):
                log.info("skipped %d records fetched before the rebalance to generation %s "
                         "(read again from the committed offset)", len(batch) - len(events),
                         generation)
            await publish(outbox, events, pipeline.handle_batch(as_current_events(events)))
            for event in events:
                await stream.ack(event)

    acks_topic = raw_topic(settings.topic_acks)

    @app.agent(acks_topic)
    async def measure_acks(stream):
        async for raw in stream:
            try:
                ack = orjson.loads(raw)
            except orjson.JSONDecodeError:
                metrics.acks_of("malformed").inc()
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

    register_readiness_view(app, settings.app_id)

    register_decide_view(app, engine, tasks, settings)
    register_dashboard(app, recorder, settings)

    return app
