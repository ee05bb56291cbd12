"""Integration test on the real broker: OTLP JSON records (as the OTel Collector's Kafka
exporter writes them) -> `intentwatch otel-bridge` -> a live worker's decisions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.config import Settings
from monitor.importers.otel import map_record
from streams import local

from . import otlp
from .test_import_otel import decide

pytestmark = pytest.mark.kafka


async def publish(bootstrap: str, topic: str, records: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for raw in records:   # one partition: the order the Collector exported them in
            await producer.send_and_wait(topic, raw, partition=0)
    finally:
        await producer.stop()


def start_bridge(kafka: str, s, topic: str, log_path) -> tuple[subprocess.Popen, int]:
    """`intentwatch otel-bridge` from `topic` to the topics of settings `s`."""
    port = local.free_port()
    env = local.worker_env(kafka, topic_intents=s.topic_intents, topic_actions=s.topic_actions,
                           topic_dead_letters=s.topic_dead_letters, fast_rebalance=1,
                           app_id=f"bridge-{topic}")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "otel-bridge", "--topic",
                                 topic, "--metrics-port", str(port)], env=env,
                                cwd=str(local.ROOT), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, port


def scrape(port: int, proc, log_path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_bridge_feeds_the_worker_and_dead_letters_bad_records(kafka, start_worker, tmp_path):
    worker = start_worker()
    s = worker.settings
    topic = s.topic_actions.replace(".actions", ".otlp_spans")
    hijack, benign = otlp.hijacked_trace(), otlp.benign_trace()
    bad_span = otlp.span(benign[0]["traceId"], "nameless tool", None, 0, 1,
                         {"gen_ai.operation.name": "execute_tool"})
    records = [
        orjson.dumps(otlp.request(hijack[:3])),            # one trace across two records
        b"this is not OTLP JSON",
        orjson.dumps(otlp.request([bad_span, benign[0]], service="mail-agent")),
        orjson.dumps(otlp.request(hijack[3:])),
        orjson.dumps(otlp.request(benign[1:], service="mail-agent")),
    ]
    expected = decide([e for raw in records for e in map_record(raw).events])
    hijack_task, benign_task = (f"otel-{t[0]['traceId']}" for t in (hijack, benign))
    assert {d["task_id"] for d in expected if d["command"]} == {hijack_task}

    log_path = tmp_path / "bridge.log"
    proc, port = start_bridge(kafka, s, topic, log_path)
    try:
        asyncio.run(publish(kafka, topic, records))
        outputs = asyncio.run(local.read_topics(
            kafka, [s.topic_decisions, s.topic_revocations, s.topic_dead_letters],
            lambda rs: sum(r.topic == s.topic_decisions for r in rs) >= len(expected)
            and sum(r.topic == s.topic_dead_letters for r in rs) >= 2, timeout=90))
        metrics = scrape(port, proc, log_path)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log_path.read_text()[-3000:]

    live = local.values(outputs, s.topic_decisions)
    by_id = lambda ds: sorted(ds, key=lambda d: d["decision_id"])
    assert by_id(live) == by_id(expected)   # the worker decided what an in-process replay does
    commands = local.values(outputs, s.topic_revocations)
    assert [c["task_id"] for c in commands] == [hijack_task]
    assert commands[0]["reason"] and commands[0]["scope"] == "task"   # no credential known
    assert not [d for d in live if d["task_id"] == benign_task and d["verdict"] != "allow"]

    dead = [r for r in outputs if r.topic == s.topic_dead_letters]
    reasons = {dict(r.headers)["x-deadletter-reason"].decode(): r for r in dead}
    assert sorted(reasons) == ["missing_attribute", "not_json"]
    assert reasons["not_json"].value == records[1]            # the original bytes
    assert reasons["missing_attribute"].value == records[2]
    assert dict(reasons["missing_attribute"].headers)["x-deadletter-topic"] == topic.encode()
    assert bad_span["spanId"].encode() in dict(reasons["missing_attribute"].headers)[
        "x-deadletter-error"]
    assert 'intentwatch_dead_letters_total{reason="not_json"} 1.0' in metrics
    assert 'intentwatch_otel_spans_total{outcome="bad"} 1.0' in metrics
    assert 'intentwatch_otel_spans_total{outcome="mapped"} 7.0' in metrics
    assert 'intentwatch_otel_spans_total{outcome="skipped"} 1.0' in metrics


def test_bridge_commits_after_producing_so_a_restart_maps_each_record_once(kafka, tmp_path):
    """Stopped and started again in its consumer group, the bridge resumes after what it
    committed: every span's events are on the actions topic exactly once, as mapped."""
    prefix = f"restart-{int(time.time() * 1000) % 10**8}"
    s = Settings(broker=f"kafka://{kafka}", topic_actions=f"{prefix}.actions",
                 topic_intents=f"{prefix}.intents", topic_dead_letters=f"{prefix}.dead")
    topic = f"{prefix}.otlp_spans"
    first, second = (orjson.dumps(otlp.request(t)) for t in (otlp.benign_trace(),
                                                             otlp.hijacked_trace()))
    wanted = map_record(first).events + map_record(second).events
    log_path = tmp_path / "bridge.log"

    def actions(at_least: int, timeout: float = 60) -> list[dict]:
        return local.values(asyncio.run(local.read_topics(
            kafka, [s.topic_actions], lambda rs: len(rs) >= at_least, timeout=timeout)))

    for raw, seen in ((first, 3), (second, len(wanted))):
        proc, _ = start_bridge(kafka, s, topic, log_path)
        try:
            asyncio.run(publish(kafka, topic, [raw]))
            assert len(actions(seen)) >= seen, log_path.read_text()[-3000:]
        finally:
            proc.terminate()
            assert proc.wait(30) == 0, log_path.read_text()[-3000:]
    # A redelivered record would show up as a second copy: wait a little for any.
    events = actions(len(wanted) + 1, timeout=5)
    assert sorted(events, key=lambda e: e["event_id"]) == sorted(wanted,
                                                                 key=lambda e: e["event_id"])
