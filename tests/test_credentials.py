"""Credential lifecycle: issued and revoked events, expiry, stolen and outliving credentials."""

import copy

from monitor.catalog import Catalog
from monitor.profiles import build_engine

from . import synthetic

CATALOG = Catalog.from_dict(synthetic.CATALOG)


def issued(task_id, cred, t, expires, workload="spiffe://test/agent-1"):
    return {"v": 1, "type": "credential.issued", "credential_id": cred, "task_id": task_id,
            "workload_id": workload, "expires_at": expires, "event_time": t}


def revoked(task_id, cred, t):
    return {"v": 1, "type": "credential.revoked", "credential_id": cred, "task_id": task_id,
            "event_time": t, "reason": "rotated"}


def act(task_id, cred, t, tool="read_inbox", **extra):
    return {"v": 1, "type": "agent.action", "event_id": f"{task_id}-{t}", "task_id": task_id,
            "agent_id": "agent-1", "event_time": t, "tool": tool, "args": {},
            "credential_id": cred, "phase": "requested", **extra}


def intent(task_id, t=0.0):
    return synthetic.task(task_id, ["read_inbox"], "read my mail", t, [])[0]


def run(events):
    engine = build_engine("full", CATALOG)
    return [d for e in events for d in engine.process(copy.deepcopy(e))]


def codes(d):
    return {r["code"] for r in d["reasons"]}


def test_a_credential_issued_by_event_is_the_tasks_own():
    out = run([intent("a"), issued("a", "cred-x", 1.0, 100.0), act("a", "cred-x", 2.0)])
    assert out[-1]["verdict"] == "allow"


def test_use_after_revocation_or_expiry_is_revoked():
    base = [intent("a"), issued("a", "cred-x", 1.0, 100.0)]
    after_revoke = run(base + [revoked("a", "cred-x", 5.0), act("a", "cred-x", 6.0)])[-1]
    assert after_revoke["verdict"] == "revoke" and "credential_revoked" in codes(after_revoke)
    expired = run(base + [act("a", "cred-x", 101.0)])[-1]
    assert expired["verdict"] == "revoke" and "credential_expired" in codes(expired)


def test_credential_presented_by_another_workload_is_revoked():
    d = run([intent("a"), issued("a", "cred-x", 1.0, 100.0),
             act("a", "cred-x", 2.0, workload_id="spiffe://test/intruder")])[-1]
    assert d["verdict"] == "revoke" and "workload_mismatch" in codes(d)


def test_a_stolen_credential_used_by_a_second_task_is_revoked_within_one_event():
    out = run([intent("a"), issued("a", "cred-a", 1.0, 100.0), intent("b", 2.0),
               act("b", "cred-a", 3.0)])
    d = out[-1]
    assert d["verdict"] == "revoke" and "credential_not_issued_to_task" in codes(d)
    assert "cred-a" in d["command"]["credential_ids"]


def test_a_credential_that_outlives_its_task_is_an_alert_at_task_end():
    out = run([intent("a"), issued("a", "cred-x", 1.0, 10_000.0), act("a", "cred-x", 2.0),
               {"v": 1, "type": "task.end", "task_id": "a", "event_time": 3.0}])
    end = out[-1]
    assert end["event_type"] == "task.end" and end["verdict"] == "alert"
    assert codes(end) == {"credential_outlives_task"}
    tidy = run([intent("a"), issued("a", "cred-x", 1.0, 10_000.0), revoked("a", "cred-x", 2.5),
                {"v": 1, "type": "task.end", "task_id": "a", "event_time": 3.0}])
    assert tidy[-1]["verdict"] == "allow"
