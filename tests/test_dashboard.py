"""The dashboard's recorder (monitor.activity), fed with the engine's real decisions of the
sample trace and of synthetic tasks; and the page's escaping rule. No broker."""

from __future__ import annotations

import io

import orjson
import pytest

from monitor.activity import MAX_EVIDENCE, MAX_GOAL, MAX_ID, ActivityRecorder
from monitor.catalog import Catalog
from monitor.contracts import decode
from monitor.profiles import build_engine
from monitor.replay import read_lines, replay
from streams import dashboard

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE


def sample_decisions() -> list[dict]:
    """The sample trace's decisions as the worker's engine decides them."""
    engine = build_engine("full", Catalog.load(SAMPLE_CATALOG))
    out = replay(read_lines(SAMPLE_TRACE), engine, 512 * 1024, io.BytesIO(), io.BytesIO())
    return out["decisions"]


def allow(task_id: str, t: float, tool: str = "read_inbox", **extra) -> dict:
    """A decision record as the engine writes it, verdict allow and no reasons."""
    return {"v": 1, "type": "decision", "decision_id": f"agent.action:{task_id}-{t}",
            "event_id": f"{task_id}-{t}", "event_type": "agent.action", "task_id": task_id,
            "agent_id": "agent-x", "tool": tool, "phase": "requested", "event_time": t,
            "verdict": "allow", "risk": 0.0, "reasons": [], "command": None, "cascade": [],
            **extra}


def test_sample_trace_tasks_ranked_by_risk_with_verdicts_and_ended():
    # As the worker does: the whole trace as one batch, each record's bytes and decisions.
    engine = build_engine("full", Catalog.load(SAMPLE_CATALOG))
    batch = [(raw, engine.process(decode(raw))) for _, raw in read_lines(SAMPLE_TRACE)]
    recorder = ActivityRecorder()
    recorder.record(batch, seen_at=100.0)
    decisions = [d for _, ds in batch for d in ds]
    tasks = recorder.tasks()
    assert [t["task_id"] for t in tasks] == ["task-hijack-1", "task-benign-1"]
    hijack, benign = tasks
    assert (hijack["verdict"], hijack["risk"], hijack["revoked"], hijack["state"]) == (
        "revoke", 1.0, True, "ended")
    assert (benign["verdict"], benign["risk"], benign["revoked"], benign["state"]) == (
        "allow", 0.0, False, "ended")
    assert hijack["goal"].startswith("Find three hotels in Paris")
    assert benign["goal"].startswith("Summarise this week's unread invoices")
    assert hijack["agent_id"] == "agent-travel"
    assert hijack["decisions"] == sum(d["task_id"] == "task-hijack-1" for d in decisions)
    assert hijack["alerts"] == sum(d["task_id"] == "task-hijack-1" and d["verdict"] != "allow"
                                   for d in decisions) == 4
    # Its last decision is its task.end, allowed: the worst verdict stays.
    assert (hijack["last_verdict"], hijack["last_risk"]) == ("allow", 0.0)


def test_timeline_holds_actions_reasons_evidence_and_the_command():
    decisions = sample_decisions()
    recorder = ActivityRecorder()
    recorder.record([(None, decisions)])
    found = recorder.timeline("task-hijack-1")
    expected = [d for d in decisions if d["task_id"] == "task-hijack-1"]
    timeline = found["timeline"]
    assert [(e["event_type"], e["tool"], e["phase"], e["verdict"]) for e in timeline] == [
        (d["event_type"], d["tool"], d["phase"], d["verdict"]) for d in expected]
    assert [e["seq"] for e in timeline] == sorted(e["seq"] for e in timeline)
    revoking = next(e for e in timeline if e["command"])
    command = next(d["command"] for d in expected if d["command"])
    assert revoking["tool"] == "send_money"
    assert revoking["command"]["command_id"] == command["command_id"]
    assert revoking["command"]["credential_ids"] == ["cred-finance-7", "cred-hijack-1"]
    codes = {r["code"] for r in revoking["reasons"]}
    assert codes == {"credential_not_issued_to_task", "tool_not_declared"}
    binding = next(r for r in revoking["reasons"] if r["code"] == "credential_not_issued_to_task")
    assert "cred-finance-7" in binding["message"]
    assert '"credential_id":"cred-finance-7"' in binding["evidence"]   # evidence as JSON text
    assert recorder.timeline("no-such-task") is None


def test_alerts_are_the_non_allow_decisions_newest_first():
    decisions = sample_decisions()
    recorder = ActivityRecorder()
    recorder.record([(None, decisions)])
    alerts = recorder.alerts()
    flagged = [d for d in decisions if d["verdict"] != "allow"]
    assert [a["event_id"] for a in alerts] == [d["event_id"] for d in reversed(flagged)]
    assert {a["task_id"] for a in alerts} == {"task-hijack-1"}
    assert sum(a["command"] is not None for a in alerts) == 1
    assert recorder.alerts(limit=2) == alerts[:2]


def test_bounds_drop_the_least_recently_active_task_and_old_entries():
    recorder = ActivityRecorder(max_tasks=3, timeline_length=4, max_alerts=5)
    for i in range(5):
        recorder.record([(None, [allow(f"t{i}", float(i))])], seen_at=float(i))
    assert len(recorder) == 3
    assert {t["task_id"] for t in recorder.tasks()} == {"t2", "t3", "t4"}
    recorder.record([(None, [allow("t2", 10.0)])], seen_at=10.0)  # t2 active again: t3 goes next
    recorder.record([(None, [allow("t5", 11.0)])], seen_at=11.0)
    assert {t["task_id"] for t in recorder.tasks()} == {"t2", "t4", "t5"}
    for k in range(10):
        recorder.record([(None, [allow("t5", 20.0 + k)])])
    timeline = recorder.timeline("t5")["timeline"]
    assert [e["event_time"] for e in timeline] == [26.0, 27.0, 28.0, 29.0]
    assert recorder.timeline("t5")["task"]["decisions"] == 11   # counted, not all kept
    for k in range(8):
        recorder.record([(None, [allow("t4", 40.0 + k, verdict="alert", risk=0.6)])])
    assert [a["event_time"] for a in recorder.alerts()] == [47.0, 46.0, 45.0, 44.0, 43.0]


def test_ties_in_risk_put_the_most_recently_active_first():
    recorder = ActivityRecorder()
    recorder.record([(None, [allow("old", 1.0)])], seen_at=1.0)
    recorder.record([(None, [allow("new", 2.0)])], seen_at=2.0)
    recorder.record([(None, [allow("risky", 3.0, verdict="alert", risk=0.55)])], seen_at=0.5)
    assert [t["task_id"] for t in recorder.tasks()] == ["risky", "new", "old"]
    assert [t["task_id"] for t in recorder.tasks(limit=1)] == ["risky"]


def test_an_alert_is_remembered_after_later_allows():
    recorder = ActivityRecorder()
    recorder.record([(None, [allow("t", 1.0, verdict="alert", risk=0.7), allow("t", 2.0)])])
    task = recorder.tasks()[0]
    assert (task["verdict"], task["risk"], task["last_verdict"], task["last_risk"]) == (
        "alert", 0.7, "allow", 0.0)
    assert (task["state"], task["revoked"]) == ("active", False)


def test_a_cascade_marks_the_other_tasks_it_revokes():
    recorder = ActivityRecorder()
    recorder.record([(None, [allow("parent", 1.0), allow("child", 1.0)])])
    cascade = [{"command_id": "c2", "task_id": "parent", "credential_ids": ["cp"],
                "scope": "credential", "reason": "cascade:child"}]
    recorder.record([(None, [allow("child", 2.0, verdict="revoke", risk=0.95, cascade=cascade)])])
    assert {t["task_id"]: t["revoked"] for t in recorder.tasks()} == {"parent": True,
                                                                         "child": True}
    entry = recorder.timeline("child")["timeline"][-1]
    assert entry["cascade"][0]["command_id"] == "c2"


def test_strings_from_agents_are_cut_to_bounded_lengths():
    huge = "x" * 100_000
    reason = {"detector": "d", "code": "c", "risk": 0.6, "message": huge,
              "evidence": {"value": huge}}
    recorder = ActivityRecorder()
    decision = allow(huge, 1.0, tool=huge, verdict="alert", risk=0.6, reasons=[reason] * 50,
                     event_type="task.intent")
    recorder.record([(orjson.dumps({"goal": huge}), [decision])])
    task = recorder.tasks()[0]
    assert len(task["task_id"]) <= MAX_ID + 3 and len(task["goal"]) <= MAX_GOAL + 3
    entry = recorder.timeline(huge)["timeline"][0]   # looked up by the full id
    assert len(entry["tool"]) <= MAX_ID + 3
    assert len(entry["reasons"]) == 6 and entry["more_reasons"] == 44
    assert all(len(r["evidence"]) <= MAX_EVIDENCE + 3 for r in entry["reasons"])


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        ActivityRecorder(max_tasks=0)


def test_the_page_puts_data_into_the_dom_only_as_text():
    # The browser test (test_dashboard_page.py) shows hostile data stays text; this guards
    # the rule itself: no HTML sink anywhere in the page's script.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in dashboard.PAGE
    csp = dashboard.PAGE_HEADERS["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert "http://" not in dashboard.PAGE and "https://" not in dashboard.PAGE  # no CDN


def test_a_fault_in_recording_never_reaches_the_worker(caplog):
    recorder = ActivityRecorder()
    recorder.record([(None, [{"task_id": "broken"}])])  # not a decision: logged, not raised
    assert "could not record" in caplog.text
    recorder.record([(None, [allow("t", 1.0)])])
    assert [t["task_id"] for t in recorder.tasks()] == ["t"]
