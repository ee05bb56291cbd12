"""On the real broker and real workers: a record produced twice counts once; a task read whole
before its intent is still decided against it; fail-closed mode denies side effects at
/v1/decide while the task table is being recovered."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import orjson
from aiokafka import AIOKafkaProducer

from monitor import state as st
from streams import local
from streams.produce import ensure_topics

from .metrics_text import scrape, value
from .test_decide import TOKEN, post
from .test_event_time import action, end, intent

FILLER_STATES = 400_000   # changelog records a restarted worker must recover first


def decisions_of(worker, task_id: str, count: int) -> list[dict]:
    records = asyncio.run(local.read_topics(
        worker.bootstrap, [worker.settings.topic_decisions],
        lambda rs: sum(orjson.loads(r.value)["task_id"] == task_id for r in rs) >= count,
        timeout=90))
    return [d for d in local.values(records) if d["task_id"] == task_id]


async def send_all(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    """Send (topic, key, value) records in order, each one as its own send (a resend of the
    same value is a second record on the topic, as an application-level retry makes)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_a_record_produced_twice_is_counted_once_by_the_worker(start_worker):
    worker = start_worker()
    s = worker.settings
    asyncio.run(ensure_topics(s, [s.topic_intents, s.topic_actions]))
    task = "dup-task"
    acts = [action(n, n, task=task) for n in (1, 1, 2, 2, 3, 4)]  # 1 and 2 sent twice
    records = [(s.topic_intents, task.encode(), orjson.dumps(intent(task, max_side_effects=3)))]
    records += [(s.topic_actions, task.encode(), orjson.dumps(a)) for a in acts]
    asyncio.run(send_all(worker.bootstrap, records))
    decided = [d for d in decisions_of(worker, task, 7) if d["event_type"] == "agent.action"]
    assert [d["event_id"] for d in decided] == [a["event_id"] for a in acts]
    dup = ["duplicate_event" in {r["code"] for r in d["reasons"]} for d in decided]
    assert dup == [False, True, False, True, False, False]
    over = ["side_effect_budget_exceeded" in {r["code"] for r in d["reasons"]} for d in decided]
    # Counted once each, e1..e3 fit the budget of 3; the fourth side effect is over it.
    assert over == [False, False, False, False, False, True]
    assert [d["verdict"] for d in decided[:5]] == ["allow"] * 5


def readiness(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
            return None
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())["reason"]
    except OSError:
        return "no answer"


async def fill_changelog(bootstrap: str, topic: str, count: int) -> None:
    """Ended task states under keys no event uses: real records the worker must recover."""
    filler = st.compact_ended({**st.new_task("x"), "ended_at": 1.0})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(count):
            key = f"filler-{i}"
            value = orjson.dumps({**filler, "task_id": key})
            futures.append(await producer.send(topic, value, key=key.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_fail_closed_denies_side_effects_while_the_task_table_recovers(start_worker):
    prefix = f"fc-{int(time.time() * 1000) % 10**8}"
    first = start_worker(prefix, decide_token=TOKEN, fail_closed=1)
    s = first.settings
    asyncio.run(ensure_topics(s, [s.topic_intents, s.topic_actions]))
    task = "fc-task"
    asyncio.run(send_all(first.bootstrap, [
        (s.topic_intents, task.encode(), orjson.dumps(intent(task))),
        (s.topic_actions, task.encode(), orjson.dumps(action(1, 1, task=task)))]))
    assert len(decisions_of(first, task, 2)) == 2   # the task's state is in the changelog
    local.stop_worker(first.proc)
    asyncio.run(fill_changelog(first.bootstrap, f"iw-{prefix}-tasks-changelog",
                               FILLER_STATES))

    second = start_worker(prefix, decide_token=TOKEN, fail_closed=1)
    side_effect = orjson.dumps(action(2, 2, task=task))
    read_only = orjson.dumps(action(3, 3, task=task, tool="read_inbox"))
    during, seen, deadline = [], set(), time.monotonic() + 180
    while time.monotonic() < deadline:
        before = readiness(second.web_port)
        status, _, answer = post(second.web_port, side_effect)
        read_status, _, _ = post(second.web_port, read_only)
        after = readiness(second.web_port)
        if before is None and after is None and status == 200 and answer["allowed"]:
            break  # recovered: decided on the task's state
        seen.add((before, status, read_status))
        if before is not None and after is not None and before != "no answer":
            during.append((status, answer, read_status))
        time.sleep(0.05)
    else:
        raise AssertionError("the restarted worker never decided the action normally")
    assert during, f"no answer while the worker was not ready; seen: {seen}"
    # It was the task table's recovery that kept it not ready (Faust's recovery log lines).
    assert "Still fetching changelog topics for recovery" in second.log.read_text()
    for denied_status, denial, read_status in during:
        assert denied_status == 200 and denial["decision"] == "deny"
        assert [r["code"] for r in denial["reasons"]] == ["state_recovering"]
        assert read_status == 503
    # After recovery: the task's intent is known, so the same side effect is allowed.
    assert answer["decision"] == "allow" and answer["reasons"] == []
    print(f"{len(during)} side effects denied during recovery")


def test_a_task_read_whole_before_its_intent_is_still_revoked(start_worker):
    # Kafka orders nothing across topics: after a rebalance or a restart on a backlog a worker
    # can read a task's actions and end before its intent. No intent of the task's partition
    # is past its end, so the end waits for the intent: no no_intent alert is published, and
    # the intent has everything decided once, the violation revoked.
    worker = start_worker()
    s = worker.settings
    asyncio.run(ensure_topics(s, [s.topic_intents, s.topic_actions]))
    task = "intent-last"
    violation = action(2, 2, task=task, args={"to": "mallory@evil.example"})
    before = [action(1, 1, task=task), violation, end(3, task=task)]
    asyncio.run(send_all(worker.bootstrap, [(s.topic_actions, task.encode(), orjson.dumps(e))
                                            for e in before]))
    deadline = time.monotonic() + 60
    # Wait until the worker has read the end.
    while value(scrape(worker.web_port), "intentwatch_events_total", type="task.end") < 1:
        assert time.monotonic() < deadline, "the worker never read the task's end"
        time.sleep(0.2)
    assert value(scrape(worker.web_port), "intentwatch_event_handling_total",
                 kind="end_held_for_intent") == 1
    asyncio.run(send_all(worker.bootstrap, [(s.topic_intents, task.encode(),
                                             orjson.dumps(intent(task)))]))
    violation_id = f"agent.action:{violation['event_id']}"
    topics = [s.topic_decisions, s.topic_alerts]
    revoked = lambda rs: any(r.topic == s.topic_alerts and orjson.loads(r.value)["decision_id"]
                             == violation_id for r in rs)
    records = asyncio.run(local.read_topics(worker.bootstrap, topics, revoked, timeout=90))
    time.sleep(2.0)  # room for a stray copy, then everything again
    records = asyncio.run(local.read_topics(worker.bootstrap, topics,
                                            lambda rs: len(rs) >= len(records), timeout=30))
    decisions = [d for d in local.values(records, s.topic_decisions) if d["task_id"] == task]
    alerts = [d for d in local.values(records, s.topic_alerts) if d["task_id"] == task]
    # The intent's decision, then the held events in event order, each decided once.
    assert [(d["event_type"], d["event_id"]) for d in decisions] == [("task.intent", None)] + [
        (e["type"], e["event_id"]) for e in before]
    assert all(r["code"] != "no_intent" for d in decisions + alerts for r in d["reasons"])
    assert [d["decision_id"] for d in alerts] == [violation_id]
    assert alerts[0]["verdict"] == "revoke" and alerts[0]["command"] is not None
