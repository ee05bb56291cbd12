"""`intentwatch otel-bridge`: OTLP JSON spans on Kafka -> intentwatch events on the input topics.

Consumes a topic of OTLP JSON records (what the OpenTelemetry Collector's Kafka exporter writes
with `encoding: otlp_json`, default topic `otlp_spans`) in a consumer group, maps each record
with monitor.importers.otel, and produces the events keyed by task id, all of them to the
actions topic, intents too: an agent span yields its task's intent and end at once, and on two
topics the worker could read the end first, and make it wait for the intent (or, with the
intent produced late, alert the actions `no_intent` and decide them again when it reads it:
docs/event-time.md); the worker decides an event by its type, whichever input topic it came
from. One topic and one key keep a task's events in the order they were mapped. A partition's offsets are committed
only once the broker has acked everything its records produced (at least once): a redelivered
record maps to the same events, with the same ids (they derive from trace and span ids).

A record with a span that cannot be mapped still yields the events of its good spans, and the
record goes to the dead-letter topic with its original bytes and the reason headers of
monitor.pipeline (reason: the first bad span's code; error: every bad span, cut at 500 bytes),
counted in intentwatch_dead_letters_total{reason}. Spans read are counted in
intentwatch_otel_spans_total{outcome} (mapped, skipped, bad).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter as PromCounter

from monitor import metrics
from monitor.config import Settings
from monitor.contracts import ContractError
from monitor.importers.otel import Mapped, map_record
from monitor.pipeline import dead_letter_headers

from .kafka_security import kafka_client_options
from .produce import ensure_topics

log = logging.getLogger("intentwatch.otel_bridge")

DEFAULT_TOPIC = "otlp_spans"   # the Collector's Kafka exporter's default topic for traces
SPANS = PromCounter("intentwatch_otel_spans_total", "OTLP spans the bridge read, by outcome",
                    ["outcome"], registry=metrics.REGISTRY)
for _outcome in ("mapped", "skipped", "bad"):
    SPANS.labels(_outcome)


def bad_record_error(errors: list[ContractError]) -> ContractError:
    """One error for a record's dead letter: the first code, every message."""
    return ContractError(errors[0].code, "; ".join(e.message for e in errors))


async def run_bridge(settings: Settings, topic: str = DEFAULT_TOPIC, group_id: str | None = None,
                     stop: asyncio.Event | None = None) -> dict:
    """Bridge until `stop` is set; return counts (records, events, dead_letters)."""
    timeouts = ({"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
                if settings.fast_rebalance else {})
    consumer = AIOKafkaConsumer(topic, **kafka_client_options(settings),
                                group_id=group_id or f"{settings.app_id}-otel-bridge",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **timeouts)
    producer = AIOKafkaProducer(**kafka_client_options(settings), enable_idempotence=True,
                                linger_ms=5)
    counts = {"records": 0, "events": 0, "dead_letters": 0}
    await producer.start()
    try:
        await consumer.start()
        try:
            log.info("otel-bridge: %s -> %s", topic, settings.topic_actions)
            while stop is None or not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    sent = [await send for record in records
                            for send in _sends(producer, record, settings, counts)]
                    await asyncio.gather(*sent)   # every produce acked before the commit
                    try:
                        await consumer.commit({TopicPartition(tp.topic, tp.partition):
                                               records[-1].offset + 1})
                    except (CommitFailedError, IllegalStateError) as exc:
                        # A rebalance took the partition: its new owner maps these records
                        # again, to the same events (ids from spans), which is at least once.
                        log.warning("offsets of %s not committed: %s", tp, exc)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    return counts


def _sends(producer, record, settings: Settings, counts: dict):
    """The sends (coroutines, each giving a delivery future) of one record's events and, if
    a span was bad, its dead letter."""
    try:
        mapped = map_record(record.value)
    except Exception as exc:   # a bug must not stop the bridge, nor lose the record
        log.exception("mapping failed on a record")
        mapped = Mapped(errors=[ContractError("processing_error", f"{type(exc).__name__}: "
                                                                  f"{exc}")])
    errors = list(mapped.errors)
    skipped = sum(mapped.skipped.values())
    SPANS.labels("skipped").inc(skipped)
    SPANS.labels("bad").inc(mapped.bad)
    SPANS.labels("mapped").inc(mapped.spans - skipped - mapped.bad)
    counts["records"] += 1
    for event in mapped.events:
        raw = orjson.dumps(event)
        if len(raw) > settings.max_event_bytes:   # the worker would refuse it, Kafka too
            errors.append(ContractError("oversize", f"event {event['event_id']}: {len(raw)} "
                                        f"bytes is over {settings.max_event_bytes}"))
            continue
        counts["events"] += 1
        yield producer.send(settings.topic_actions, raw, key=event["task_id"].encode())
    if errors:
        err = bad_record_error(errors)
        log.warning("dead letter from %s[%s]@%s: %s", record.topic, record.partition,
                    record.offset, err)
        metrics.dead_letters_of(err.code).inc()
        counts["dead_letters"] += 1
        yield producer.send(settings.topic_dead_letters, record.value, key=record.key,
                            headers=dead_letter_headers(err, record.topic, record.partition,
                                                        record.offset))


# -- command line -------------------------------------------------------------------------------
def add_otel_bridge_parser(sub) -> None:
    p = sub.add_parser("otel-bridge", help="map OTLP JSON spans from Kafka (GenAI conventions) "
                                           "to intentwatch events on the actions topic")
    p.add_argument("--topic", default=DEFAULT_TOPIC,
                   help=f"topic of OTLP JSON records (default {DEFAULT_TOPIC}, the Collector's)")
    p.add_argument("--group", help="consumer group (default <INTENTWATCH_APP_ID>-otel-bridge)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on this port (default: off)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_otel_bridge)


def cmd_otel_bridge(args, settings: Settings) -> int:
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1", registry=metrics.REGISTRY)

    async def main() -> dict:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ensure_topics(settings, [args.topic, settings.topic_actions,
                                       settings.topic_dead_letters])
        return await run_bridge(settings, args.topic, args.group, stop)

    counts = asyncio.run(main())
    print(f"otel-bridge: {counts}", file=sys.stderr)
    return 0
