"""The bulk histogram update gives the same series as one observe() per value."""

import math
import random

from prometheus_client import CollectorRegistry, Histogram

from monitor.metrics import observe_many

BUCKETS = (1e-5, 1e-4, 1e-3, 1e-2, 0.1)


def samples(bulk: bool, values: list[float]) -> dict:
    registry = CollectorRegistry()
    h = Histogram("x_seconds", "x", buckets=BUCKETS, registry=registry)
    if bulk:
        observe_many(h, values)
    else:
        for v in values:
            h.observe(v)
    return {(s.name, s.labels.get("le")): s.value for metric in registry.collect()
            for s in metric.samples if not s.name.endswith("_created")}


def test_observe_many_equals_observe_one_by_one():
    rnd = random.Random(7)
    values = [rnd.choice([0.0, 1e-5, 3e-5, 1e-4, 0.05, 0.1, 2.0, 1e-3]) for _ in range(500)]
    one_by_one, bulk = samples(False, values), samples(True, values)
    total = ("x_seconds_sum", None)
    assert math.isclose(bulk.pop(total), one_by_one.pop(total), rel_tol=1e-12)
    assert bulk == one_by_one
    assert bulk[("x_seconds_bucket", "0.0001")] == sum(v <= 1e-4 for v in values)


def test_tally_counts_each_decisions_risk_in_the_risk_histogram():
    from monitor import metrics

    def risk_samples():
        return {(s.name, s.labels.get("le")): s.value for s in metrics.RISK.collect()[0].samples}

    before = risk_samples()
    tally = metrics.Tally()
    decisions = [{"verdict": v, "risk": r, "command": None} for v, r in
                 [("allow", 0.0), ("allow", 0.2), ("alert", 0.6), ("revoke", 0.95),
                  ("revoke", 1.0)]]
    tally.decided("agent.action", 1e-4, decisions[:2])
    tally.decided("agent.action", 1e-4, decisions[2:])
    tally.flush()
    after = risk_samples()
    grew = lambda key: after[key] - before.get(key, 0.0)
    assert grew(("intentwatch_decision_risk_count", None)) == len(decisions)
    assert math.isclose(grew(("intentwatch_decision_risk_sum", None)), 2.75)
    assert grew(("intentwatch_decision_risk_bucket", "0.0")) == 1
    assert grew(("intentwatch_decision_risk_bucket", "0.5")) == 2
    assert grew(("intentwatch_decision_risk_bucket", "0.9")) == 3
    assert grew(("intentwatch_decision_risk_bucket", "0.95")) == 4
    assert grew(("intentwatch_decision_risk_bucket", "+Inf")) == 5


def test_acks_count_a_redelivered_commands_duplicate_apart_from_rejections():
    from monitor import metrics

    def acks(status):
        return metrics.acks_of(status)._value.get()

    before = {s: acks(s) for s in ("enforced", "rejected", "duplicate", "other")}
    metrics.observe_ack({"status": "enforced", "issued_at": 10.0, "acked_at": 10.5})
    metrics.observe_ack({"status": "rejected", "duplicate": True})   # a redelivery
    metrics.observe_ack({"status": "rejected", "duplicate": False})  # e.g. a forged command
    metrics.observe_ack({"status": "teleported"})
    assert {s: acks(s) - before[s] for s in before} == {
        "enforced": 1, "rejected": 1, "duplicate": 1, "other": 1}


def test_lag_series_of_partitions_no_longer_assigned_are_dropped():
    from monitor import metrics

    def series():
        return {(s.labels["topic"], s.labels["partition"]): s.value
                for s in metrics.CONSUMER_LAG.collect()[0].samples}

    metrics.set_consumer_lag({("agent.actions", 0): 5, ("agent.actions", 1): 7})
    assert series() == {("agent.actions", "0"): 5.0, ("agent.actions", "1"): 7.0}
    metrics.set_consumer_lag({("agent.actions", 1): 0})   # partition 0 went to another worker
    assert series() == {("agent.actions", "1"): 0.0}
    metrics.set_consumer_lag({})


def test_duplicates_late_events_and_events_waiting_for_their_intent_are_counted():
    import orjson

    from monitor import metrics
    from monitor.engine import Engine
    from monitor.pipeline import Pipeline

    def counted():
        return {s.labels["kind"]: s.value for s in metrics.HANDLING.collect()[0].samples}

    before = counted()
    base = {"v": 1, "task_id": "m1", "agent_id": "a", "tool": "read_inbox", "args": {},
            "phase": "requested", "type": "agent.action"}
    events = [
        {**base, "event_id": "e1", "event_time": 100.0},   # held: no intent yet
        {**base, "event_id": "e1", "event_time": 100.0},   # its repeat
        {"v": 1, "type": "task.intent", "task_id": "m1", "agent_id": "a", "workload_id": "w",
         "goal": "read", "tools": ["read_inbox"], "event_time": 99.0},
        {**base, "event_id": "e2", "event_time": 200.0},
        {**base, "event_id": "e3", "event_time": 150.0},   # 50 s behind its task: late
        {**base, "task_id": "m2", "event_id": "x", "event_time": 210.0},  # held
        {"v": 1, "type": "task.end", "task_id": "m2", "event_id": "m2-end",
         "event_time": 211.0},                              # held, its end waits
        {"v": 1, "type": "task.intent", "task_id": "m3", "agent_id": "a", "workload_id": "w",
         "goal": "read", "tools": ["read_inbox"], "event_time": 220.0},  # m2's x, end: no_intent
        {"v": 1, "type": "task.intent", "task_id": "m2", "agent_id": "a", "workload_id": "w",
         "goal": "read", "tools": ["read_inbox"], "event_time": 209.0},  # both decided again
    ]
    pipeline = Pipeline(Engine(), 1 << 20)
    pipeline.handle_batch((orjson.dumps(e), None, 4) for e in events)   # (raw, key, lane)
    after = counted()
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert grew == {"duplicate": 1, "late": 1, "held_for_intent": 3, "end_held_for_intent": 1,
                    "no_intent": 2, "intent_after_end": 2}
