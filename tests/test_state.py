"""Per-task window state: counts, bounds, and that it is plain JSON data."""

import orjson

from monitor import state as st
from monitor.catalog import Catalog

CATALOG = Catalog.from_dict({"tools": {"send": {"capabilities": ["send"], "targets": ["to"]},
                                       "read": {"capabilities": ["read"]},
                                       "delete": {"capabilities": ["delete"]}}})


def act(tool, t, **args):
    return {"tool": tool, "event_time": t, "args": args, "call_id": f"c{t}"}


def declared(*tools):
    task = st.new_task("t")
    task["intent"] = {"tools": list(tools)}
    return task


def test_window_counts_actions_side_effects_undeclared_tools_and_targets():
    task = declared("read", "send")
    st.record_action(task, act("read", 1.0), CATALOG.get("read"))
    st.record_action(task, act("send", 2.0, to="a@x"), CATALOG.get("send"))
    st.record_action(task, act("send", 3.0, to=["a@x", "b@x"]), CATALOG.get("send"))
    st.record_action(task, act("delete", 4.0), CATALOG.get("delete"))
    w = task["window"]
    assert (w["actions"], w["side_effects"], w["undeclared"]) == (4, 3, 1)
    assert w["targets"] == [st.target_hash("a@x"), st.target_hash("b@x")]
    assert (w["first_time"], w["last_time"]) == (1.0, 4.0)
    assert orjson.loads(orjson.dumps(task)) == task


def test_a_state_of_the_previous_version_is_upgraded():
    old = declared("read", "send")
    old["window"] = {"actions": 3, "side_effects": 2, "errors": 0,
                     "per_tool": {"read": 1, "send": 1, "delete": 1},
                     "resources": ["a@x", "b@x"], "recent_tools": ["read", "send", "delete"],
                     "recent_times": [0.0, 1.0, 2.0], "first_time": 1.0, "last_time": 3.0}
    w = st.upgrade(old)["window"]
    assert w == {"actions": 3, "side_effects": 2, "errors": 0, "undeclared": 1,
                 "targets": [st.target_hash("a@x"), st.target_hash("b@x")],
                 "recent_times": [0.0, 1.0, 2.0], "first_time": 1.0, "last_time": 3.0}
    assert set(w) == set(st.new_task("x")["window"])


def test_the_state_keeps_the_intents_contract_fields_only():
    intent = {"v": 1, "type": "task.intent", "task_id": "t", "agent_id": "a", "goal": "g",
              "tools": ["read"], "event_time": 1.0, "suite": "an importer's extra field"}
    assert st.kept_intent(intent) == {"agent_id": "a", "goal": "g", "tools": ["read"],
                                      "event_time": 1.0}


def test_rate_window_keeps_only_recent_event_times():
    task = declared("read")
    for t in (0.0, 10.0, 70.0, 75.0):
        st.record_action(task, act("read", t), CATALOG.get("read"))
    assert task["window"]["recent_times"] == [70.0, 75.0]


def test_rate_window_holds_short_offsets_and_at_most_what_the_rate_counts():
    task = declared("read")
    for i in range(100):
        st.record_action(task, act("read", 1_800_000_000.5 + i / 10), CATALOG.get("read"))
    times = task["window"]["recent_times"]
    assert len(times) == st.MAX_RECENT_TIMES
    assert times[-1] == 9.9 and times[0] == 7.0  # seconds after the first action


def test_lists_are_bounded():
    task = declared("send")
    for i in range(500):
        st.record_action(task, act("send", float(i), to=f"u{i}@x"), CATALOG.get("send"))
    assert len(task["window"]["targets"]) == st.MAX_TARGETS
    assert len(task["open_calls"]) == st.MAX_OPEN_CALLS


def test_completion_closes_its_request_and_counts_errors():
    task = declared("read")
    st.record_action(task, act("read", 1.0), CATALOG.get("read"))
    assert st.record_completion(task, {"call_id": "c1.0", "status": "error"}) is True
    assert task["window"]["errors"] == 1
    assert st.record_completion(task, {"call_id": "c1.0", "status": "ok"}) is False


def test_pending_holds_are_bounded_and_push_out_the_oldest():
    task = st.new_task("t")
    pushed = [st.hold_pending(task, {"n": i}) for i in range(st.MAX_PENDING + 2)]
    assert pushed[: st.MAX_PENDING] == [None] * st.MAX_PENDING
    assert pushed[-2:] == [{"n": 0}, {"n": 1}]
