"""The alert gate: de-duplication and per-task rate limits; the Alertmanager payload."""

from monitor.alerting import AlertGate, alertmanager_payload


def decision(task="t1", code="tool_not_declared", verdict="alert"):
    return {"task_id": task, "agent_id": "a", "event_id": "e", "verdict": verdict, "risk": 0.6,
            "reasons": [{"code": code, "message": "m"}]}


def test_allow_is_never_sent_and_duplicates_are_suppressed_within_the_window():
    gate = AlertGate(dedup_seconds=300, per_task=10)
    assert not gate.admit(decision(verdict="allow"), 0.0)
    assert gate.admit(decision(), 0.0)
    assert not gate.admit(decision(), 10.0)
    assert gate.admit(decision(code="budget"), 10.0)
    assert gate.admit(decision(), 301.0)
    assert gate.suppressed["duplicate"] == 1


def test_each_task_is_rate_limited_on_its_own():
    gate = AlertGate(dedup_seconds=0, per_task=2, window_seconds=60)
    sent = [gate.admit(decision(code=f"c{i}"), float(i)) for i in range(5)]
    assert sent == [True, True, False, False, False]
    assert gate.admit(decision(task="t2", code="c9"), 4.0)  # another task is not held back
    assert gate.admit(decision(code="c7"), 61.0)  # the window has moved on
    assert gate.suppressed["rate_limited"] == 3


def test_alertmanager_payload_has_labels_and_annotations():
    p = alertmanager_payload(decision(verdict="revoke"), "2026-11-29T00:00:00Z")
    assert p["labels"]["severity"] == "critical" and p["labels"]["task_id"] == "t1"
    assert p["labels"]["reason"] == "tool_not_declared" and p["startsAt"].endswith("Z")
