"""Duplicated, late and out-of-order events (monitor.event_time), in process: no Kafka."""

import copy
import random

import orjson

from monitor import event_time as et
from monitor import state as st
from monitor.catalog import Catalog
from monitor.engine import Engine
from monitor.profiles import build_engine

from .conftest import SAMPLE_CATALOG

T0 = 1_767_225_600.0


def engine(lateness: float = 5.0) -> Engine:
    return Engine(catalog=Catalog.load(SAMPLE_CATALOG), allowed_lateness=lateness)


def intent(task="t1", **extra):
    return {"v": 1, "type": "task.intent", "task_id": task, "agent_id": "agent-mail",
            "workload_id": "spiffe://acme.example/agents/agent-mail",
            "goal": "email the summary to finance@acme.example",
            "tools": ["read_inbox", "send_email"], "scopes": {"to": ["*@acme.example"]},
            "max_actions": 20, "max_side_effects": 2, "credentials": ["cred-1"],
            "event_time": T0, **extra}


def action(n, t, tool="send_email", task="t1", phase="requested", **extra):
    a = {"v": 1, "type": "agent.action", "event_id": f"{task}-e{n}-{phase}", "task_id": task,
         "agent_id": "agent-mail", "event_time": T0 + t, "tool": tool,
         "args": {"to": "finance@acme.example"}, "credential_id": "cred-1", "phase": phase,
         "call_id": f"{task}-c{n}"}
    if phase == "completed":
        a.update(status="ok", result="sent")
    a.update(extra)
    return a


def end(t, task="t1"):
    return {"v": 1, "type": "task.end", "task_id": task, "event_id": f"{task}-end",
            "event_time": T0 + t, "status": "completed"}


def decide(eng, *events):
    return [d for e in events for d in eng.process(copy.deepcopy(e))]


def codes(decision):
    return {r["code"] for r in decision["reasons"]}


# -- duplicates --------------------------------------------------------------------------------
def test_a_duplicate_does_not_count_against_the_side_effect_budget():
    eng = engine()
    first = decide(eng, intent(), action(1, 1), action(2, 2))
    assert [d["verdict"] for d in first] == ["allow"] * 3
    again = decide(eng, action(2, 2), action(1, 1), action(2, 2))  # three retries
    assert [d["verdict"] for d in again] == ["allow"] * 3
    assert all(codes(d) == {"duplicate_event"} for d in again)
    w = eng.store["t1"]["window"]
    assert (w["actions"], w["side_effects"]) == (2, 2)
    # The budget still holds: the next new side effect is the third and is over it.
    third = decide(eng, action(3, 3))[0]
    assert "side_effect_budget_exceeded" in codes(third)


def test_a_duplicate_does_not_add_to_the_rate_window_nor_teach_the_models():
    eng = build_engine("full", Catalog.load(SAMPLE_CATALOG))
    decide(eng, intent(), action(1, 1, tool="read_inbox"))
    learned = {d.name: d.state() for d in eng.detectors}
    window = copy.deepcopy(eng.store["t1"]["window"])
    decide(eng, action(1, 1, tool="read_inbox"))
    assert eng.store["t1"]["window"] == window
    assert {d.name: d.state() for d in eng.detectors} == learned


def test_a_duplicate_repeats_the_first_verdict_and_risk_without_a_second_command():
    eng = engine()
    bad = action(1, 1, args={"to": "attacker@evil.example"})
    first = decide(eng, intent(), bad)[-1]
    assert first["verdict"] == "revoke" and first["command"] is not None
    again = decide(eng, bad)
    assert len(again) == 1
    repeat = again[0]
    assert (repeat["verdict"], repeat["risk"], repeat["decision_id"]) == \
        (first["verdict"], first["risk"], first["decision_id"])
    assert repeat["command"] is None and repeat["cascade"] == []
    assert codes(repeat) == {"duplicate_event"}


def test_an_event_id_reused_with_other_content_is_decided_as_a_new_event():
    eng = engine()
    ok = action(1, 1)
    assert decide(eng, intent(), ok)[-1]["verdict"] == "allow"
    forged = {**ok, "args": {"to": "attacker@evil.example"}}  # same id, other call
    d = decide(eng, forged)[0]
    assert d["verdict"] == "revoke" and "duplicate_event" not in codes(d)
    assert eng.store["t1"]["window"]["side_effects"] == 2


def test_a_duplicate_of_a_held_action_is_held_once_and_then_repeats_its_decision():
    eng = engine()
    assert decide(eng, action(1, 1), action(1, 1)) == []
    assert len(eng.store["t1"]["pending"]) == 1
    released = decide(eng, intent())
    assert [d["event_type"] for d in released] == ["task.intent", "agent.action"]
    repeat = decide(eng, action(1, 1))[0]
    assert repeat["risk"] == released[1]["risk"] and codes(repeat) == {"duplicate_event"}


def test_a_duplicated_task_end_does_not_end_the_task_twice():
    eng = engine()
    decide(eng, intent(), action(1, 1), end(2))
    repeat = decide(eng, end(2))[0]
    assert codes(repeat) == {"duplicate_event"}


def test_the_state_remembers_a_bounded_number_of_fingerprints():
    eng = engine()
    decide(eng, intent(max_actions=1000, max_side_effects=1000))
    for n in range(3 * et.MAX_SEEN):
        decide(eng, action(n, n * 0.1, tool="read_inbox"))
    task = eng.store["t1"]
    assert len(task["seen"]) == et.MAX_SEEN
    # Past the bound a repeat is decided again as a new event, and counted.
    before = task["window"]["actions"]
    assert "duplicate_event" not in codes(decide(eng, action(0, 0, tool="read_inbox"))[0])
    assert eng.store["t1"]["window"]["actions"] == before + 1


def test_a_state_written_before_event_time_tracking_is_read_and_gains_it():
    eng = engine()
    decide(eng, intent())
    old = eng.store["t1"]
    del old["seen"], old["latest"]   # the shape of a 0.2 state
    decide(eng, action(1, 1))
    assert len(eng.store["t1"]["seen"]) == 1 and eng.store["t1"]["latest"] == T0 + 1
    assert codes(decide(eng, action(1, 1))[0]) == {"duplicate_event"}


# -- lateness ------------------------------------------------------------------------------------
def test_an_action_within_the_lateness_after_task_end_is_accepted_as_in_order():
    eng = engine(lateness=5.0)
    decide(eng, intent(), end(10))
    d = decide(eng, action(1, 7))[0]     # 3 s before the end, arriving after it
    assert d["verdict"] == "allow" and "late_event" not in codes(d)


def test_a_backdated_action_beyond_the_lateness_after_task_end_is_refused():
    eng = engine(lateness=5.0)
    decide(eng, intent(), end(10))
    d = decide(eng, action(1, 2))[0]     # 8 s before the end: later than allowed
    assert {"late_event", "after_task_end"} <= codes(d)
    assert d["verdict"] == "revoke"
    assert d["event_time"] == T0 + 2    # the decision names the event's own time
    late = next(r for r in d["reasons"] if r["code"] == "late_event")
    assert late["evidence"]["decided_at"] == T0 + 10


def test_a_backdated_action_after_expiry_is_refused_like_an_in_order_one():
    eng = engine(lateness=5.0)
    decide(eng, intent(expires_at=T0 + 20), action(1, 30, tool="read_inbox"))
    d = decide(eng, action(2, 10, tool="read_inbox"))[0]   # before expiry, 20 s late
    assert {"late_event", "after_expiry"} <= codes(d)


def test_a_late_event_is_still_decided_and_a_punctual_one_is_not_marked():
    eng = engine(lateness=5.0)
    decisions = decide(eng, intent(), action(1, 20, tool="read_inbox"),
                       action(2, 1, tool="read_inbox"), action(3, 18, tool="read_inbox"))
    assert len(decisions) == 4
    assert ["late_event" in codes(d) for d in decisions] == [False, False, True, False]
    assert {d["verdict"] for d in decisions} == {"allow"}


# -- out of order ------------------------------------------------------------------------------
def test_a_completion_before_its_request_is_counted_once():
    eng = engine()
    decided = decide(eng, intent(), action(1, 2, phase="completed"), action(1, 1))
    assert [d["verdict"] for d in decided] == ["allow"] * 3
    w = eng.store["t1"]["window"]
    assert (w["actions"], w["side_effects"]) == (1, 1)
    assert eng.store["t1"]["open_calls"] == []


def test_the_first_of_a_calls_two_events_to_arrive_is_the_one_scored():
    # In order the request is scored and its completion is not; out of order, the other way
    # round: each call is judged once, by its args, whichever event brings them first.
    eng = engine()
    bad = {"args": {"to": "attacker@evil.example"}}
    completion, request = decide(eng, intent(), action(1, 2, phase="completed", **bad),
                                 action(1, 1, **bad))[1:]
    assert completion["verdict"] == "revoke" and "resource_out_of_scope" in codes(completion)
    assert codes(request) == {"task_revoked"}


def test_an_older_request_lands_in_time_order_in_the_rate_window():
    task = st.new_task("t1")
    task["intent"] = st.kept_intent(intent())
    spec = Catalog.load(SAMPLE_CATALOG).get("read_inbox")
    for n, t in enumerate((0, 10, 4, 7)):
        st.record_action(task, action(n, t, tool="read_inbox"), spec)
    assert task["window"]["recent_times"] == [0, 4, 7, 10]
    assert task["window"]["last_time"] == T0 + 10


def _trace(tasks=6):
    """Tasks of reads and side effects, some out of scope, a budget crossed, a late end."""
    events = []
    for k in range(tasks):
        tid = f"task-{k}"
        events.append(intent(tid))
        for n in range(4):
            to = "attacker@evil.example" if (k % 3 == 0 and n == 2) else "finance@acme.example"
            tool = "read_inbox" if n % 2 == 0 else "send_email"
            events.append(action(n, 1 + n, tool=tool, task=tid, args={"to": to}))
            events.append(action(n, 1.5 + n, tool=tool, task=tid, phase="completed",
                                 args={"to": to}))
        events.append(end(10, tid))
    return events


def _shuffled_within(events, lateness, seed):
    """The same events, each task's reordered by at most `lateness` seconds (its intent first
    and its end last, as a runtime emits them)."""
    rng = random.Random(seed)
    jitter = {id(e): e["event_time"] + rng.uniform(0, lateness) for e in events}
    body = [e for e in events if e["type"] == "agent.action"]
    body.sort(key=lambda e: jitter[id(e)])
    return [e for e in events if e["type"] == "task.intent"] + body + \
        [e for e in events if e["type"] == "task.end"]


def test_a_trace_shuffled_within_the_lateness_gets_the_same_findings_from_the_rules():
    # The rules that judge an action on its own (scope, tools, credentials, lifetime) find the
    # same for each event in any order within the lateness, and nothing is marked late. Only
    # task_revoked (the refusal of whatever arrives after a revoke) follows arrival order.
    def findings(evs):
        eng = build_engine("rules", Catalog.load(SAMPLE_CATALOG), allowed_lateness=5.0)
        return {d["decision_id"]: codes(d) - {"task_revoked"} for d in decide(eng, *evs)}
    events = _trace()
    in_order = findings(events)
    assert any(in_order.values())  # (the trace has violations to find)
    for seed in (1, 2, 3):
        shuffled = findings(_shuffled_within(events, 2, seed))
        assert shuffled == in_order
        assert not any("late_event" in c for c in shuffled.values())


def test_a_shuffled_trace_counts_the_same_budget_overruns():
    # Which side effect is the one over budget follows arrival order; how many there are does
    # not.
    events = [intent(max_side_effects=2)] + [action(n, n) for n in range(5)] + [end(10)]
    def overruns(evs):
        return sum("side_effect_budget_exceeded" in codes(d) for d in decide(engine(), *evs))
    assert overruns(events) == 3
    for seed in (1, 2, 3):
        assert overruns(_shuffled_within(events, 4, seed)) == 3


def test_replay_is_deterministic_with_duplicates_and_late_events():
    events = _trace()
    rng = random.Random(7)
    noisy = [e for e in events for _ in range(1 + (rng.random() < 0.3))]  # retries
    noisy.insert(5, action(9, -30, task="task-0", tool="read_inbox"))     # very late
    a = orjson.dumps(decide(engine(), *noisy))
    b = orjson.dumps(decide(engine(), *noisy))
    assert a == b
