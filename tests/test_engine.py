"""The engine end to end in process: verdicts, revoke commands, ordering, determinism."""

import copy
import io

import orjson
import pytest

from monitor.catalog import Catalog
from monitor.engine import Engine
from monitor.policy import Policy, fuse
from monitor.replay import read_lines, replay
from monitor.revocation import command_id

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE


def events():
    return [orjson.loads(raw) for _, raw in read_lines(SAMPLE_TRACE)]


def run(evs, store=None):
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG), store=store)
    return [d for e in evs for d in engine.process(copy.deepcopy(e))]


def test_sample_trace_revokes_the_hijacked_task_once_and_leaves_the_benign_one_alone():
    decisions = run(events())
    benign = [d for d in decisions if d["task_id"] == "task-benign-1"]
    hijack = [d for d in decisions if d["task_id"] == "task-hijack-1"]
    assert {d["verdict"] for d in benign} == {"allow"}
    commands = [d["command"] for d in decisions if d["command"]]
    assert len(commands) == 1
    cmd = commands[0]
    assert cmd["task_id"] == "task-hijack-1"
    assert cmd["credential_ids"] == ["cred-finance-7", "cred-hijack-1"]
    first = next(d for d in hijack if d["verdict"] == "revoke")
    assert first["tool"] == "send_money" and first["phase"] == "requested"
    assert {r["code"] for r in first["reasons"]} == {"credential_not_issued_to_task",
                                                      "tool_not_declared"}
    # Everything the hijacked task does after the revocation is refused, with no new command.
    after = hijack[hijack.index(first) + 1:]
    assert [d["verdict"] for d in after if d["event_type"] == "agent.action"] == ["revoke"] * 3


def test_reprocessing_an_event_yields_the_same_command_id():
    evs = events()
    a = [d["command"] for d in run(evs) if d["command"]]
    b = [d["command"] for d in run(evs) if d["command"]]
    assert a == b
    assert a[0]["command_id"] == command_id("task-hijack-1", ["cred-hijack-1", "cred-finance-7"],
                                            a[0]["reason"])


def test_actions_before_their_intent_are_held_and_decided_when_it_arrives():
    evs = events()
    in_order = run(evs)
    intents = [e for e in evs if e["type"] == "task.intent"]
    rest = [e for e in evs if e["type"] != "task.intent" and e["type"] != "task.end"]
    ends = [e for e in evs if e["type"] == "task.end"]
    shuffled = run(rest + intents + ends)
    key = lambda d: d["decision_id"]
    assert sorted(shuffled, key=key) == sorted(in_order, key=key)


def by_id(decisions):
    return sorted(decisions, key=lambda d: d["decision_id"])


def no_intent(decisions):
    return [d for d in decisions if any(r["code"] == "no_intent" for r in d["reasons"])]


def test_a_whole_task_read_before_its_intent_is_decided_once_when_it_comes():
    # Two topics: a worker may read a task's actions and end before its intent (a rebalance, a
    # restart on a backlog). The end waits for the intent (no intent of its lane is past it):
    # nothing is decided before the intent, and then everything once, as if in order.
    evs = events()
    in_order = run(evs)
    intents = [e for e in evs if e["type"] == "task.intent"]
    rest = [e for e in evs if e["type"] != "task.intent"]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    assert [d for e in rest for d in engine.process(copy.deepcopy(e))] == []
    assert engine.take_counts()["end_held_for_intent"] == 2
    shuffled = [d for e in intents for d in engine.process(copy.deepcopy(e))]
    assert no_intent(shuffled) == []
    assert len({d["decision_id"] for d in shuffled}) == len(shuffled)  # each decided once
    assert by_id(shuffled) == by_id(in_order)
    assert sum(d["command"] is not None for d in shuffled) == 1
    assert engine.store["task-hijack-1"]["revoked_at"] is not None
    assert "end_held" not in engine.store["task-hijack-1"]


def hijack_before_intent(lane):
    """The hijacked task's actions and end, its intent, and an engine that read the first."""
    evs = [e for e in events() if e["task_id"] == "task-hijack-1"]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    assert [d for e in evs[1:] for d in engine.process(copy.deepcopy(e), lane)] == []
    return engine, evs[1:], evs[0]


def other_intent(t, task_id="task-other"):
    intent = dict(events()[0], task_id=task_id, event_time=t)
    intent.pop("expires_at")
    return intent


def test_an_intent_on_another_lane_does_not_release_a_held_end():
    engine, rest, intent = hijack_before_intent(lane=1)
    end_time = rest[-1]["event_time"]
    # Lane 2's intents are ahead (its partition was read faster): lane 1 still waits. (Not
    # past the retention: the engine's watermark would free the task, see test_retention.)
    decided = engine.process(other_intent(end_time + 600), lane=2)
    assert [d["task_id"] for d in decided] == ["task-other"]
    decided = engine.process(copy.deepcopy(intent), lane=1)
    assert no_intent(decided) == []
    assert [d["decision_id"] for d in decided] == [_id(e) for e in [intent, *rest]]
    assert sum(d["command"] is not None for d in decided) == 1


def _id(e):
    return f"{e['type']}:{e['event_id']}" if e.get("event_id") else f"{e['type']}:{e['task_id']}"


def test_its_lanes_intents_past_the_end_release_it_no_intent_and_its_intent_still_decides_again():
    engine, rest, intent = hijack_before_intent(lane=1)
    until = rest[-1]["event_time"] + engine.allowed_lateness
    # An intent of its lane at the end plus the lateness: not past it yet.
    assert [d["task_id"] for d in engine.process(other_intent(until, "o1"), lane=1)] == ["o1"]
    # Past it: the task's own intent would have been read by now (one partition, in order).
    decided = engine.process(other_intent(until + 0.5, "o2"), lane=1)
    assert decided[0]["task_id"] == "o2"
    released = decided[1:]
    assert [d["event_id"] for d in released] == [e["event_id"] for e in rest]
    assert {d["verdict"] for d in released[:-1]} == {"alert"}
    assert all(d["reasons"][0]["code"] == "no_intent" for d in released[:-1])
    assert all(d["command"] is None for d in released)
    assert engine.take_counts()["no_intent"] == len(rest)
    # Kept: the intent read even later has it all decided again, the violation revoked.
    again = engine.process(copy.deepcopy(intent), lane=1)
    assert [d["decision_id"] for d in again] == [_id(e) for e in [intent, *rest]]
    assert no_intent(again) == []
    assert sum(d["command"] is not None for d in again) == 1
    assert engine.take_counts()["intent_after_end"] == len(rest)


def test_an_end_its_lanes_intents_have_passed_is_decided_at_once():
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    evs = [e for e in events() if e["task_id"] == "task-benign-1" and e["type"] != "task.intent"]
    engine.process(other_intent(evs[-1]["event_time"] + 10), lane=0)
    decisions = [d for e in evs for d in engine.process(copy.deepcopy(e), lane=0)]
    assert [d["event_id"] for d in decisions] == [e["event_id"] for e in evs]
    assert "end_held_for_intent" not in engine.take_counts()


def test_a_task_that_never_declares_an_intent_is_alerted_once_its_lanes_intents_pass_its_end():
    evs = [e for e in events() if e["task_id"] == "task-benign-1" and e["type"] != "task.intent"]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    assert [d for e in evs for d in engine.process(copy.deepcopy(e))] == []
    decisions = engine.process(other_intent(evs[-1]["event_time"] + 60))[1:]
    assert [d["event_id"] for d in decisions] == [e["event_id"] for e in evs]
    assert {d["verdict"] for d in decisions[:-1]} == {"alert"}
    assert all(d["reasons"][0]["code"] == "no_intent" for d in decisions[:-1])
    assert decisions[-1]["event_type"] == "task.end"


def test_actions_still_waiting_for_an_intent_are_settled_at_the_end_of_a_replay():
    evs = [e for e in events() if e["task_id"] == "task-benign-1"
           and e["type"] not in ("task.intent", "task.end")]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    assert [d for e in evs for d in engine.process(copy.deepcopy(e))] == []  # held
    summary = replay([(i, orjson.dumps(e)) for i, e in enumerate(evs, 1)],
                     Engine(catalog=Catalog.load(SAMPLE_CATALOG)), 1 << 20)
    assert [d["event_id"] for d in summary["decisions"]] == [e["event_id"] for e in evs]
    assert all(d["reasons"][0]["code"] == "no_intent" for d in summary["decisions"])


def test_a_held_end_is_settled_at_the_end_of_a_replay():
    evs = [e for e in events() if e["task_id"] == "task-hijack-1" and e["type"] != "task.intent"]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    assert [d for e in evs for d in engine.process(copy.deepcopy(e), 3)] == []
    flushed = engine.flush()
    assert [d["event_id"] for d in flushed] == [e["event_id"] for e in evs]
    assert all(d["reasons"][0]["code"] == "no_intent" for d in flushed[:-1])
    assert "task-hijack-1" not in engine.store and engine.flush() == []
    summary = replay([(i, orjson.dumps(e)) for i, e in enumerate(evs, 1)],
                     Engine(catalog=Catalog.load(SAMPLE_CATALOG)), 1 << 20)
    assert [d["decision_id"] for d in summary["decisions"]] == [d["decision_id"]
                                                                for d in flushed]


def test_a_full_hold_ends_the_wait_and_loses_no_decision():
    evs = [e for e in events() if e["task_id"] == "task-hijack-1" and e["type"] != "task.intent"]
    more = [dict(evs[0], event_id=f"after-end-{i}", event_time=evs[-1]["event_time"] + i)
            for i in range(70)]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    full = 64 - len(evs)   # events after the end that fill the hold, its end in it
    assert [d for e in evs + more[:full] for d in engine.process(copy.deepcopy(e))] == []
    assert len(engine.store["task-hijack-1"]["pending"]) == 64
    # One more: the wait ends (rather than push the end out of the hold), all of it decided.
    decided = [d for e in more[full:] for d in engine.process(copy.deepcopy(e))]
    decided += engine.flush()
    assert sorted(d["event_id"] for d in decided) == sorted(e["event_id"] for e in evs + more)
    assert "end_held" not in engine.store["task-hijack-1"]
    assert len(engine.store["task-hijack-1"]["pending"]) == 64  # kept, decided, for an intent


def test_a_repeated_end_waits_with_the_first():
    evs = [e for e in events() if e["task_id"] == "task-hijack-1"]
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    for e in evs[1:] + evs[-1:]:
        assert engine.process(copy.deepcopy(e)) == []
    decided = engine.process(copy.deepcopy(evs[0]))
    assert [d["decision_id"] for d in decided] == [_id(e) for e in evs]


def test_a_second_different_intent_cannot_widen_the_task():
    evs = events()
    widened = dict(evs[0], tools=evs[0]["tools"] + ["send_money"], event_time=evs[0]["event_time"] + 1)
    decisions = run([evs[0], widened])
    assert decisions[1]["verdict"] == "alert"
    assert decisions[1]["reasons"][0]["code"] == "intent_redeclared"
    store = {}
    run([evs[0], widened], store)
    assert "send_money" not in store[evs[0]["task_id"]]["intent"]["tools"]


def test_state_is_plain_data_that_survives_serialisation_mid_stream():
    evs = events()
    store = {}
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG), store=store)
    first = [d for e in evs[:8] for d in engine.process(e)]
    restored = {k: orjson.loads(orjson.dumps(v)) for k, v in store.items()}
    engine2 = Engine(catalog=Catalog.load(SAMPLE_CATALOG), store=restored)
    second = [d for e in evs[8:] for d in engine2.process(e)]
    assert first + second == run(evs)


def test_fusion_is_noisy_or_and_policy_thresholds():
    assert fuse([]) == 0.0
    assert fuse([{"risk": 0.6}, {"risk": 0.6}]) == pytest.approx(0.84)
    p = Policy(alert_at=0.5, revoke_at=0.9)
    assert [p.verdict(r) for r in (0.1, 0.5, 0.89, 0.9, 1.0)] == [
        "allow", "alert", "alert", "revoke", "revoke"]
    with pytest.raises(ValueError):
        Policy(alert_at=0.9, revoke_at=0.5)


def test_replay_writes_decisions_and_dead_letters():
    lines = list(read_lines(SAMPLE_TRACE)) + [(99, b"garbage")]
    out, dead = io.BytesIO(), io.BytesIO()
    summary = replay(lines, Engine(catalog=Catalog.load(SAMPLE_CATALOG)), 512 * 1024, out, dead)
    assert summary["events"] == 16 and summary["dead_letters"] == 1
    assert len(out.getvalue().splitlines()) == len(summary["decisions"]) == 16
    record = orjson.loads(dead.getvalue())
    assert (record["line"], record["reason"], record["original"]) == (99, "not_json", "garbage")


def test_inline_assessment_denies_what_the_stream_would_revoke_and_changes_nothing():
    evs = events()
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG))
    hijack = next(e for e in evs if e["tool" if e["type"] == "agent.action" else "type"]
                  == "send_money")
    for e in evs[: evs.index(hijack)]:
        engine.process(copy.deepcopy(e))
    before = orjson.dumps(engine.store)
    denied = engine.assess(hijack)
    assert denied["allowed"] is False and denied["verdict"] == "revoke"
    assert {r["code"] for r in denied["reasons"]} == {"credential_not_issued_to_task",
                                                       "tool_not_declared"}
    benign = next(e for e in evs if e.get("tool") == "send_email" and e["phase"] == "requested")
    assert engine.assess(benign)["allowed"] is True
    assert orjson.dumps(engine.store) == before  # nothing learned, nothing recorded
    unknown = dict(benign, task_id="nobody")
    assert engine.assess(unknown)["allowed"] is False


def test_an_ended_task_keeps_only_what_it_still_needs():
    evs = events()
    store = {}
    engine = Engine(catalog=Catalog.load(SAMPLE_CATALOG), store=store)
    benign = [e for e in evs if e["task_id"] == "task-benign-1"]
    open_request = dict(benign[1], event_id="late-req", call_id="late-call",
                        event_time=benign[-1]["event_time"] - 0.5)
    for e in benign[:-1] + [open_request, benign[-1]]:
        engine.process(copy.deepcopy(e))
    ended = store["task-benign-1"]
    assert ended["intent"]["goal"] == "" and "provenance" not in ended
    assert len(orjson.dumps(ended)) < 1024
    # A late completion of a call requested before the end is paired, not refused ...
    late_done = dict(open_request, event_id="late-done", phase="completed", status="ok",
                     result="sent", event_time=benign[-1]["event_time"] + 1)
    assert engine.process(late_done)[0]["verdict"] == "allow"
    # ... while a new action after the end is still refused, and explained.
    after = dict(benign[1], event_id="after-end", call_id="after",
                 event_time=benign[-1]["event_time"] + 2)
    decision = engine.process(after)[0]
    assert decision["verdict"] == "revoke"
    assert "after_task_end" in {r["code"] for r in decision["reasons"]}


def test_the_pipeline_gives_the_engine_each_records_lane():
    from monitor.pipeline import Pipeline

    engine, rest, _ = hijack_before_intent(lane=1)
    pipeline = Pipeline(engine, 1 << 20)
    past = other_intent(rest[-1]["event_time"] + 60)
    [(on_lane_2, err)] = pipeline.handle_batch([(orjson.dumps(past), b"task-other", 2)])
    assert err is None and [d["task_id"] for d in on_lane_2] == ["task-other"]
    on_lane_1, err = pipeline.handle(orjson.dumps(dict(past, task_id="o1")), b"o1", 1)
    assert err is None and [d["task_id"] for d in on_lane_1] == ["o1"] + ["task-hijack-1"] * len(
        rest)
