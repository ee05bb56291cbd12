"""Every rule detector, on hand-made task state, with no broker."""

from monitor import state as st
from monitor.catalog import Catalog
from monitor.detectors import Budget, CredentialBinding, DeclaredTools, ResourceScope, TaskLifetime
from monitor.detectors.base import CERTAIN, SUSPICIOUS, VIOLATION

CATALOG = Catalog.from_dict({"tools": {
    "read_inbox": {"capabilities": ["read"]},
    "send_email": {"capabilities": ["send"], "targets": ["to"]},
}})


def task(**intent):
    t = st.new_task("t1")
    t["intent"] = {"v": 1, "type": "task.intent", "task_id": "t1", "agent_id": "a1",
                   "workload_id": "spiffe://x/a1", "goal": "g", "tools": ["read_inbox"],
                   "credentials": ["c1"], "event_time": 0.0, **intent}
    return t


def action(tool="read_inbox", t=1.0, **kw):
    return {"v": 1, "type": "agent.action", "event_id": f"e{t}", "task_id": "t1",
            "agent_id": "a1", "event_time": t, "tool": tool, "args": {}, "phase": "requested",
            "credential_id": "c1", **kw}


def codes(findings):
    return [f["code"] for f in findings]


def score(det, a, t):
    return det.score_one(a, t, CATALOG.get(a["tool"]))


def test_declared_tool_passes_and_undeclared_tools_are_graded_by_capability():
    det, t = DeclaredTools(), task()
    assert score(det, action(), t) == []
    sent = score(det, action("send_email"), t)
    assert codes(sent) == ["tool_not_declared"] and sent[0]["risk"] == VIOLATION
    t["intent"]["tools"] = []
    assert score(det, action(), t)[0]["risk"] == SUSPICIOUS


def test_unknown_tools_are_treated_as_side_effecting():
    det, t = DeclaredTools(), task()
    f = score(det, action("format_disk"), t)
    assert f[0]["risk"] == VIOLATION and f[0]["evidence"]["capabilities"] == ["write"]


def test_resource_scope_checks_globs_per_argument_and_every_list_element():
    det = ResourceScope()
    t = task(tools=["send_email"], scopes={"to": ["*@acme.example"]})
    assert score(det, action("send_email", args={"to": "bob@acme.example"}), t) == []
    out = score(det, action("send_email", args={"to": ["a@acme.example", "x@evil.example"]}), t)
    assert codes(out) == ["resource_out_of_scope"]
    assert out[0]["evidence"]["values"] == ["x@evil.example"]
    assert score(det, action("send_email", args={"subject": "free"}), t) == []


def test_lifetime_after_end_and_after_expiry():
    det = TaskLifetime()
    t = task(expires_at=100.0)
    assert score(det, action(t=50.0), t) == []
    assert codes(score(det, action(t=101.0), t)) == ["after_expiry"]
    t["ended_at"] = 60.0
    assert codes(score(det, action(t=61.0), t)) == ["after_task_end"]


def test_budgets_for_actions_and_side_effects():
    det = Budget()
    t = task(max_actions=2, max_side_effects=1)
    a = action()
    assert score(det, a, t) == []
    st.record_action(t, a, CATALOG.get("read_inbox"))
    st.record_action(t, action(t=2.0), CATALOG.get("read_inbox"))
    assert codes(score(det, action(t=3.0), t)) == ["action_budget_exceeded"]
    t2 = task(max_side_effects=1)
    send = action("send_email", args={"to": "x"})
    assert score(det, send, t2) == []
    st.record_action(t2, send, CATALOG.get("send_email"))
    found = score(det, action("send_email", t=2.0), t2)
    assert codes(found) == ["side_effect_budget_exceeded"] and found[0]["risk"] == VIOLATION


def test_credential_of_another_task_or_agent_is_certain_misuse():
    det, t = CredentialBinding(), task()
    assert score(det, action(), t) == []
    stolen = score(det, action(credential_id="c9"), t)
    assert codes(stolen) == ["credential_not_issued_to_task"] and stolen[0]["risk"] == CERTAIN
    assert codes(score(det, action(agent_id="a2"), t)) == ["agent_mismatch"]
    assert score(det, action(credential_id=None), t) == []
