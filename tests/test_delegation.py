"""Delegation: children within their parent, escalations, and cascading revocation."""

import copy
from collections import Counter

from monitor.catalog import Catalog
from monitor.profiles import build_engine

from . import synthetic

CATALOG = Catalog.from_dict(synthetic.CATALOG)


def intent(task_id, tools, t, parent=None, depth=0, scopes=None, creds=None):
    e = synthetic.task(task_id, tools, "handle the mail", t, [])[0]
    e.update(max_delegation_depth=depth, credentials=creds or [f"cred-{task_id}"],
             scopes=scopes or {})
    if parent:
        e["parent_task_id"] = parent
    return e


def act(task_id, t, tool="read_inbox", args=None):
    return {"v": 1, "type": "agent.action", "event_id": f"{task_id}-{t}", "task_id": task_id,
            "agent_id": "agent-1", "event_time": t, "tool": tool, "args": args or {},
            "credential_id": f"cred-{task_id}", "phase": "requested"}


PARENT = intent("p", ["read_inbox", "send_email"], 0.0, depth=1,
                scopes={"to": ["*@acme.example"]})


def run(events, engine=None):
    engine = engine or build_engine("full", CATALOG)
    return [d for e in events for d in engine.process(copy.deepcopy(e))]


def commands(decisions):
    out = []
    for d in decisions:
        out += ([d["command"]] if d["command"] else []) + d["cascade"]
    return out


def test_a_child_within_its_parent_is_allowed():
    child = intent("c", ["read_inbox"], 1.0, parent="p", scopes={"to": ["bob@acme.example"]})
    assert [d["verdict"] for d in run([PARENT, child, act("c", 2.0)])] == ["allow"] * 3


def test_an_escalating_child_cascades_to_parent_and_child_once_per_credential():
    child = intent("c", ["read_inbox", "send_money"], 1.0, parent="p",
                   scopes={"to": ["*"]})
    decisions = run([PARENT, child])
    assert decisions[1]["verdict"] == "revoke"
    assert {r["code"] for r in decisions[1]["reasons"]} == {"tools_escalated", "scope_escalated"}
    issued = commands(decisions)
    per_cred = Counter(c for cmd in issued for c in cmd["credential_ids"])
    assert per_cred == {"cred-p": 1, "cred-c": 1}
    cascade = decisions[1]["cascade"]
    assert [(c["task_id"], c["credential_ids"], c["reason"]) for c in cascade] == [
        ("p", ["cred-p"], "cascade:c")]


def test_delegation_depth_is_enforced():
    no_delegation = intent("p", ["read_inbox"], 0.0, depth=0)
    child = intent("c", ["read_inbox"], 1.0, parent="p")
    decisions = run([no_delegation, child])
    assert {r["code"] for r in decisions[1]["reasons"]} == {"delegation_not_allowed"}
    greedy = intent("c", ["read_inbox"], 1.0, parent="p", depth=3,
                    scopes={"to": ["*@acme.example"]})
    decisions = run([PARENT, greedy])
    assert {r["code"] for r in decisions[1]["reasons"]} == {"delegation_depth_escalated"}


def test_revoking_a_parent_revokes_its_descendants_and_they_are_refused_after():
    child = intent("c", ["read_inbox"], 1.0, parent="p", depth=0,
                   scopes={"to": ["bob@acme.example"]})
    engine = build_engine("full", CATALOG)
    hijack = act("p", 2.0, tool="send_money", args={"recipient": "x"})
    decisions = run([PARENT, child, hijack], engine)
    assert decisions[-1]["verdict"] == "revoke"
    assert Counter(c for cmd in commands(decisions) for c in cmd["credential_ids"]) == {
        "cred-p": 1, "cred-c": 1}
    later = run([act("c", 3.0)], engine)[0]
    assert later["verdict"] == "revoke" and later["command"] is None and later["cascade"] == []


def test_an_unknown_parent_is_an_alert_not_a_revocation():
    orphan = intent("c", ["read_inbox"], 1.0, parent="nobody")
    d = run([orphan])[0]
    assert d["verdict"] == "alert" and d["reasons"][0]["code"] == "parent_unknown"


def test_reprocessing_yields_the_same_command_ids():
    child = intent("c", ["read_inbox", "send_money"], 1.0, parent="p")
    ids = [c["command_id"] for c in commands(run([PARENT, child]))]
    assert ids == [c["command_id"] for c in commands(run([PARENT, child]))]
    assert len(set(ids)) == len(ids)
