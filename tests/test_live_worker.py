"""Integration tests on the real Kafka broker: a live worker decides the sample trace."""

from __future__ import annotations

import asyncio
import io
import pickle
import time
import zlib

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor import signing
from monitor.catalog import Catalog
from monitor.detectors.window_anomaly import WindowAnomaly
from monitor.enforcement.verify import Verifier
from monitor.profiles import build_engine
from monitor.replay import read_lines, replay
from streams import local, models
from streams.produce import produce

from . import synthetic
from .alertmanager_server import Alertmanager
from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE
from .test_snapshots import Payload

pytestmark = pytest.mark.kafka


def replayed(lines) -> list[dict]:
    engine = build_engine("full", Catalog.load(SAMPLE_CATALOG))  # the worker's line-up
    return replay(lines, engine, 512 * 1024, io.BytesIO(), io.BytesIO())["decisions"]


def read_outputs(worker, until, timeout=60.0):
    s = worker.settings
    topics = [s.topic_decisions, s.topic_alerts, s.topic_revocations, s.topic_dead_letters]
    return asyncio.run(local.read_topics(worker.bootstrap, topics, until, timeout))


def count(records, topic):
    return sum(r.topic == topic for r in records)


def test_hijacked_task_is_revoked_once_and_live_equals_replay(start_worker, signing_keys):
    worker = start_worker()
    s = worker.settings
    lines = list(read_lines(SAMPLE_TRACE))
    expected = replayed(lines)
    asyncio.run(produce(lines, s))

    records = read_outputs(worker, lambda rs: count(rs, s.topic_decisions) >= len(expected)
                           and count(rs, s.topic_revocations) >= 1)
    # Give a duplicate command, if the worker were to send one, time to arrive.
    records += read_outputs(worker, lambda rs: False, timeout=2.0)[len(records):]

    commands = local.values(records, s.topic_revocations)
    assert len(commands) == 1
    assert commands[0]["task_id"] == "task-hijack-1"
    assert commands[0]["credential_ids"] == ["cred-finance-7", "cred-hijack-1"]
    assert not [c for c in commands if c["task_id"] == "task-benign-1"]
    # Signed by the worker's key: a consumer with the public key accepts it, once.
    command = commands[0]
    verifier = Verifier.for_keys([signing.load_public_key(signing_keys[1])],
                                 clock=lambda: command["issued_at"])
    assert verifier.verify(command).accepted
    assert verifier.verify(command).reason == "replayed"
    forged = dict(command, credential_ids=["cred-someone-else"])
    assert verifier.verify(forged).reason == "bad_signature"

    live = local.values(records, s.topic_decisions)
    assert len(live) == len(expected) == 16
    by_id = lambda ds: sorted(ds, key=lambda d: d["decision_id"])
    assert by_id(live) == by_id(expected)  # the same decisions, field for field
    # The decision record embeds the command as decided; the bus copy adds the signature.
    assert {k: v for k, v in command.items() if k not in ("signature", "key_id")} == next(
        d["command"] for d in expected if d["command"])

    alerts = local.values(records, s.topic_alerts)
    assert {a["task_id"] for a in alerts} == {"task-hijack-1"}
    assert all(a["verdict"] != "allow" for a in alerts)
    # Decisions per task keep the order of the task's events.
    hijack = [d["event_time"] for d in live if d["task_id"] == "task-hijack-1"]
    assert hijack == sorted(hijack)

    metrics = worker.get("/metrics").decode()
    assert "intentwatch_revoke_commands_total 1.0" in metrics
    assert 'intentwatch_decisions_total{verdict="revoke"} 4.0' in metrics


MALFORMED = [
    (b"this is not json", "not_json"),
    (b'["an", "array"]', "not_object"),
    (b'{"v": 1, "type": "agent.action", "task_id": "task-benign-1"}', "missing_field"),
    (b'{"v": 1, "type": "task.end", "task_id": 7, "event_time": 1.0}', "wrong_type"),
    (b'{"v": 99, "type": "task.end", "task_id": "x", "event_time": 1.0}', "unsupported_version"),
    (b'{"v": 1, "type": "agent.teleport", "task_id": "x"}', "unknown_type"),
    (orjson.dumps({"v": 1, "type": "task.end", "task_id": "big", "event_time": 1.0,
                   "status": "x" * 600_000}), "oversize"),
]


def test_malformed_events_are_dead_lettered_and_good_ones_still_decided(start_worker):
    worker = start_worker()
    s = worker.settings
    good = list(read_lines(SAMPLE_TRACE))
    # Interleave the bad records between the good ones.
    lines, bad_iter = [], iter(MALFORMED)
    for i, line in enumerate(good):
        lines.append(line)
        bad = next(bad_iter, None) if i % 2 == 1 else None
        if bad is not None:
            lines.append((0, bad[0]))
    assert sum(1 for _, raw in lines if raw not in dict(MALFORMED)) == len(good)
    asyncio.run(produce(lines, s))

    records = read_outputs(worker, lambda rs: count(rs, s.topic_decisions) >= 16
                           and count(rs, s.topic_dead_letters) >= len(MALFORMED))
    dead = [r for r in records if r.topic == s.topic_dead_letters]
    reasons = sorted(dict(r.headers)["x-deadletter-reason"].decode() for r in dead)
    assert reasons == sorted(code for _, code in MALFORMED)
    # The dead letter keeps the original bytes, and says where it came from.
    originals = {r.value for r in dead}
    assert originals == {raw for raw, _ in MALFORMED}
    assert all(dict(r.headers)["x-deadletter-topic"] == s.topic_actions.encode() for r in dead)

    live = local.values(records, s.topic_decisions)
    assert sorted(d["decision_id"] for d in live) == sorted(
        d["decision_id"] for d in replayed(good))
    assert worker.proc.poll() is None  # still running
    metrics = worker.get("/metrics").decode()
    for _, code in MALFORMED:
        assert f'intentwatch_dead_letters_total{{reason="{code}"}} 1.0' in metrics


def tmp_catalog():
    path = local.ROOT / "out" / "test-synthetic-catalog.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(orjson.dumps(synthetic.CATALOG))
    return path


# What the learned-model tests teach a first worker, and a task that only a sequence model
# remembering it finds improbable (clean tasks always read before they send).
TRAINING = [e for i in range(60) for e in synthetic.benign(i, 100.0 * i)]
KEEP = {"model_snapshot_seconds": 600, "retention_seconds": 10**6}  # (ended tasks still held)


def as_lines(events):
    return [(0, orjson.dumps(e)) for e in events]


def odd_task():
    return synthetic.task("odd", ["read_inbox", "send_email"], "Reply to my boss", 10**5, [
        ("send_email", {"to": "x"}, "sent")])


def train_and_stop(start_worker, prefix: str):
    """A worker that learns TRAINING and stops cleanly, which snapshots its models."""
    first = start_worker(prefix, catalog=tmp_catalog(), **KEEP)
    s = first.settings
    asyncio.run(produce(as_lines(TRAINING), s))
    read_outputs(first, lambda rs: count(rs, s.topic_decisions) >= len(TRAINING), timeout=90)
    assert local.stop_worker(first.proc) == 0
    return first


def decisions_of(worker, events) -> list[dict]:
    """Produce `events` and wait for their own decisions: a count of all decisions can be
    reached early, when the worker re-decides training records whose offsets the first one
    had not committed yet (at least once)."""
    s = worker.settings
    asyncio.run(produce(as_lines(events), s))
    ids = {e["event_id"] for e in events if "event_id" in e}

    def latest(records) -> dict[str, dict]:
        return {d["event_id"]: d for d in local.values(records, s.topic_decisions)
                if d["event_id"] in ids}

    # Every task here declares an intent; one read after its task's actions (another topic)
    # has them decided no_intent first, then again: wait for that, and keep the latest copy.
    records = read_outputs(worker, lambda rs: ids <= {
        i for i, d in latest(rs).items()
        if "no_intent" not in {r["code"] for r in d["reasons"]}}, timeout=90)
    return list(latest(records).values())


def improbable_move_found(decisions) -> bool:
    send = next(d for d in decisions if d["task_id"] == "odd" and d["phase"] == "requested")
    return "improbable_move" in {r["code"] for r in send["reasons"]}


def test_learned_models_survive_a_worker_restart(start_worker, tmp_path):
    prefix = f"restart-{tmp_path.name[-12:]}"
    train_and_stop(start_worker, prefix)
    second = start_worker(prefix, catalog=tmp_catalog(), **KEEP)
    # An action of a task that ended before the restart: only recovered task state knows that.
    late = dict(synthetic.benign(0, 0.0)[1], event_id="late-1", event_time=10**5 + 50)
    decisions = decisions_of(second, [*odd_task(), late])
    assert improbable_move_found(decisions)
    assert "restored learned models" in second.log.read_text()
    after_end = next(d for d in decisions if d["event_id"] == "late-1")
    assert after_end["verdict"] == "revoke"
    assert "after_task_end" in {r["code"] for r in after_end["reasons"]}


def test_forged_model_snapshots_are_skipped_counted_and_the_good_ones_restored(start_worker,
                                                                              tmp_path):
    """Someone who can write the models topic (not the worker's key) appends records after the
    worker's own: a pickle that would run code, garbage, a snapshot signed by another key, a
    record of no detector. The worker still starts, skips each (a line and a count), restores
    every detector from its own older record, and runs no code."""
    prefix = f"forged-{tmp_path.name[-12:]}"
    first = train_and_stop(start_worker, prefix)
    marker = tmp_path / "pickle-ran"
    other_key = signing.load_private_key(signing.generate_key_pair()[0])
    plausible = WindowAnomaly().state()  # a fresh model: would make it forget what it learned
    value, headers = models.encode("window_anomaly", plausible, other_key)
    forged = [(b"sequence_model", zlib.compress(pickle.dumps(Payload(marker))), []),
              (b"injection_evidence", b"not even zlib", []),
              (b"window_anomaly", value, headers),
              (b"no_such_detector", zlib.compress(plausible), [])]

    async def append() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=first.bootstrap)
        await producer.start()
        try:
            for key, value, headers in forged:
                await producer.send_and_wait(models.topic_name(first.settings), value, key=key,
                                             headers=headers)
        finally:
            await producer.stop()
    asyncio.run(append())

    second = start_worker(prefix, catalog=tmp_catalog(), **KEEP)
    assert improbable_move_found(decisions_of(second, odd_task()))  # the sequence model's own
    log = second.log.read_text()
    for name, reason in [("sequence_model", "unsigned, and this worker has a signing key"),
                         ("injection_evidence", "unsigned"), ("window_anomaly", "bad signature"),
                         ("no_such_detector", "unsigned")]:
        assert f"skipped a model snapshot record of '{name}': {reason}" in log
    assert "restored learned models: ['injection_evidence', 'sequence_model', " \
           "'window_anomaly']" in log
    metrics = second.get("/metrics").decode()
    for detector in ("injection_evidence", "sequence_model", "window_anomaly", "unknown"):
        assert f'intentwatch_model_snapshots_rejected_total{{detector="{detector}"}} 1.0' in \
            metrics
    assert second.proc.poll() is None and not marker.exists()


def test_an_escalating_sub_agent_cascades_over_the_bus(start_worker):
    """Parent and child land on different partitions; the cascade still revokes each one's
    credential exactly once."""
    worker = start_worker(catalog=tmp_catalog())
    s = worker.settings
    parent = synthetic.task("parent-1", ["read_inbox", "send_email"], "handle my mail", 0.0, [])
    parent[0].update(max_delegation_depth=1, scopes={"to": ["*@acme.example"]})
    child = synthetic.task("child-1", ["read_inbox", "send_money"], "pay the bill", 0.0, [])
    child[0].update(parent_task_id="parent-1", event_time=5.0)
    lines = [(0, orjson.dumps(e)) for e in parent[:1]]
    asyncio.run(produce(lines, s))
    read_outputs(worker, lambda rs: count(rs, s.topic_decisions) >= 1)
    asyncio.run(produce([(0, orjson.dumps(child[0]))], s))
    records = read_outputs(worker, lambda rs: count(rs, s.topic_revocations) >= 2)
    records += read_outputs(worker, lambda rs: False, timeout=2.0)[len(records):]
    commands = local.values(records, s.topic_revocations)
    per_cred = sorted(c for cmd in commands for c in cmd["credential_ids"])
    assert per_cred == ["cred-child-1", "cred-parent-1"]
    assert all(cmd["signature"] for cmd in commands)


def test_alerts_reach_a_real_alertmanager_deduplicated(start_worker, tmp_path):
    manager = Alertmanager(tmp_path / "alertmanager")
    try:
        worker = start_worker(alertmanager_url=manager.url + "/api/v2/alerts")
        s = worker.settings
        asyncio.run(produce(list(read_lines(SAMPLE_TRACE)), s))
        read_outputs(worker, lambda rs: count(rs, s.topic_alerts) >= 4)
        deadline = time.monotonic() + 30
        while len(alerts := manager.alerts()) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(1.0)  # room for a duplicate, if one were sent
        metrics = worker.get("/metrics").decode()
    finally:
        manager.stop()
    # Four non-allow decisions for the hijacked task: the revoke, then three refusals that all
    # say "task_revoked"; the refusals are one alert to people, not three.
    reasons = sorted(a["labels"]["reason"] for a in alerts)
    assert reasons == ["credential_not_issued_to_task,tool_not_declared", "task_revoked"]
    assert {a["labels"]["task_id"] for a in alerts} == {"task-hijack-1"}
    revoke = next(a for a in alerts if a["labels"]["verdict"] == "revoke")
    assert revoke["labels"]["severity"] == "critical" and revoke["status"]["state"] == "active"
    assert "credential" in revoke["annotations"]["summary"]
    assert 'intentwatch_alerts_pushed_total{outcome="sent"} 2.0' in metrics
    assert 'intentwatch_alerts_pushed_total{outcome="suppressed"} 2.0' in metrics


def test_a_credential_stolen_from_one_task_is_revoked_on_its_first_use_by_another(start_worker):
    worker = start_worker(catalog=tmp_catalog())
    s = worker.settings
    owner = synthetic.task("owner-1", ["read_inbox"], "read my mail", 0.0, [])[:1]
    thief = synthetic.task("thief-1", ["read_inbox"], "read my mail", 1.0, [
        ("read_inbox", {}, "3 new messages")])[:2]
    thief[1]["credential_id"] = "cred-owner-1"  # the owner's credential, on the thief's call
    asyncio.run(produce([(0, orjson.dumps(e)) for e in owner + thief], s))
    records = read_outputs(worker, lambda rs: count(rs, s.topic_revocations) >= 1)
    decisions = {d["event_id"]: d for d in local.values(records, s.topic_decisions)}
    first_use = decisions[thief[1]["event_id"]]
    assert first_use["verdict"] == "revoke"
    assert first_use["command"]["credential_ids"] == ["cred-owner-1", "cred-thief-1"]
    assert [c["task_id"] for c in local.values(records, s.topic_revocations)] == ["thief-1"]
