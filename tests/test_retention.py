"""Retention: ended, expired and never-declared tasks are freed by event time, memory stays
bounded under churn, and freeing never depends on the wall clock."""

import copy
from collections.abc import MutableMapping

import orjson
import pytest

from monitor import retention
from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.engine import Engine
from monitor.profiles import build_engine

from . import synthetic

CATALOG = Catalog.from_dict(synthetic.CATALOG)
R = 100.0  # retention seconds in these tests


def engine(store=None, registry=None, profile="rules", seconds=R):
    e = build_engine(profile, CATALOG, store=store, registry=registry)
    e.retention.seconds = seconds
    return e


def intent(task_id, t, expires=None, parent=None, depth=0, tools=("read_inbox", "send_email")):
    e = {"v": 1, "type": "task.intent", "task_id": task_id, "agent_id": "agent-1",
         "workload_id": "spiffe://test/agent-1", "goal": "handle the mail", "tools": list(tools),
         "credentials": [f"cred-{task_id}"], "event_time": t, "max_delegation_depth": depth}
    if expires is not None:
        e["expires_at"] = expires
    if parent:
        e["parent_task_id"] = parent
    return e


def act(task_id, t, tool="read_inbox", n=0):
    return {"v": 1, "type": "agent.action", "event_id": f"{task_id}-{t}-{n}",
            "task_id": task_id, "agent_id": "agent-1", "event_time": t, "tool": tool,
            "args": {}, "credential_id": f"cred-{task_id}", "phase": "requested"}


def end(task_id, t):
    return {"v": 1, "type": "task.end", "task_id": task_id, "event_id": f"{task_id}-end",
            "event_time": t}


def feed(eng, events):
    return [d for e in events for d in eng.process(copy.deepcopy(e))]


def test_an_ended_task_is_freed_once_event_time_passes_its_retention():
    eng = engine()
    feed(eng, [intent("a", 0.0), act("a", 1.0), end("a", 2.0)])
    assert "a" in eng.store and "a" in eng.registry
    # Other tasks move event time along: not yet past ended_at + retention.
    feed(eng, [intent("b", 50.0), act("b", 2.0 + R)])
    assert "a" in eng.store
    feed(eng, [act("b", 2.0 + R + 0.5)])
    assert "a" not in eng.store and "a" not in eng.registry
    assert "b" in eng.store
    assert eng.retention.stats()["freed"] == 1


def test_wall_clock_alone_frees_nothing(monkeypatch):
    import time
    eng = engine()
    feed(eng, [intent("a", 0.0), end("a", 1.0)])
    monkeypatch.setattr(time, "time", lambda: 1e12)
    monkeypatch.setattr(time, "monotonic", lambda: 1e12)
    feed(eng, [intent("b", 2.0), act("b", 3.0)])
    assert "a" in eng.store


def test_an_action_within_retention_is_still_refused_with_the_tasks_state():
    eng = engine()
    feed(eng, [intent("a", 0.0), end("a", 2.0)])
    d = feed(eng, [act("a", 2.0 + R - 1)])
    assert d[0]["verdict"] == "revoke"
    assert "after_task_end" in {r["code"] for r in d[0]["reasons"]}


def test_an_event_of_a_freed_task_is_held_like_one_without_intent_and_settled_at_expiry():
    eng = engine()
    feed(eng, [intent("a", 0.0), end("a", 2.0)])
    # Its own event past the deadline: the old state is dropped (lazily, by its own time).
    assert feed(eng, [act("a", 2.0 + R + 1)]) == []
    held = eng.store["a"]
    assert held["intent"] is None and held["ended_at"] is None and len(held["pending"]) == 1
    # The held action expires too: decided no_intent when freed, and the state is gone.
    d = feed(eng, [intent("b", 2.0 + 2 * R + 2)])
    assert [(x["task_id"], x["verdict"], x["reasons"][0]["code"]) for x in d[:1]] == [
        ("a", "alert", "no_intent")]
    assert "a" not in eng.store


def test_held_actions_of_a_task_that_never_declares_are_bounded_and_expire():
    eng = engine()
    decisions = feed(eng, [act("ghost", float(i), n=i) for i in range(200)])
    assert len(eng.store["ghost"]["pending"]) == 64
    assert len(decisions) == 200 - 64  # the pushed-out ones are decided no_intent
    decisions = feed(eng, [intent("other", 199.0 + R + 1)])
    assert "ghost" not in eng.store
    assert sum(d["task_id"] == "ghost" for d in decisions) == 64
    assert all(d["reasons"][0]["code"] == "no_intent" for d in decisions
               if d["task_id"] == "ghost")


def test_a_task_touched_after_it_was_scheduled_is_not_freed_early():
    eng = engine()
    # The intent's expiry schedules it at 10 + R; the end at 105 moves its deadline later.
    feed(eng, [intent("a", 0.0, expires=10.0), end("a", 105.0)])
    feed(eng, [intent("b", 10.0 + R + 5)])
    assert "a" in eng.store  # popped at 10 + R, found touched, rescheduled at 105 + R
    feed(eng, [act("b", 105.0 + R - 1)])
    assert "a" in eng.store
    feed(eng, [act("b", 105.0 + R + 1)])
    assert "a" not in eng.store


def test_a_task_whose_time_to_live_passed_without_end_is_freed_after_the_grace():
    eng = engine()
    feed(eng, [intent("a", 0.0, expires=30.0), act("a", 5.0)])
    d = feed(eng, [act("a", 31.0)])
    assert "after_expiry" in {r["code"] for r in d[0]["reasons"]}  # within grace: refused
    feed(eng, [intent("b", 30.0 + R)])
    assert "a" in eng.store
    feed(eng, [act("b", 30.0 + R + 1)])
    assert "a" not in eng.store and "a" not in eng.registry


def test_index_rebuilt_after_a_restart_frees_old_tasks():
    store, registry = {}, {}
    first = engine(store, registry)
    feed(first, [intent("a", 0.0), end("a", 1.0), intent("b", 0.0, expires=20.0),
                 intent("c", 2.0), act("c", 3.0)])
    # A new engine over the recovered store and registry: its index is empty.
    restored = {k: orjson.loads(orjson.dumps(v)) for k, v in store.items()}
    again = engine(restored, dict(registry))
    assert again.retention.rebuild() == 2  # a (ended) and b (expires); c runs, no deadline
    feed(again, [act("c", 20.0 + R + 1)])
    assert set(restored) == {"c"}
    # Without an explicit rebuild the first event rebuilds the index by itself.
    restored = {k: orjson.loads(orjson.dumps(v)) for k, v in store.items()}
    third = engine(restored, dict(registry))
    feed(third, [act("c", 20.0 + R + 1)])
    assert set(restored) == {"c"}


def test_replay_of_the_same_events_gives_the_same_decisions_and_store():
    events = []
    for i in range(60):
        t = i * 10.0
        events += [intent(f"t{i}", t, expires=t + 40 if i % 3 == 0 else None),
                   act(f"t{i}", t + 1), act(f"t{i}", t + 2, tool="send_money")]
        if i % 3 != 0:
            events.append(end(f"t{i}", t + 3))
        if i % 7 == 0:
            events.append(act(f"t{i}", t + R + 50))  # a late action, freed or not by then
    a, b = engine(profile="full"), engine(profile="full")
    da, db = feed(a, events), feed(b, events)
    assert orjson.dumps(da) == orjson.dumps(db)
    assert a.store == b.store and a.retention.stats() == b.retention.stats()
    assert a.retention.stats()["freed"] > 0


def test_decisions_of_a_task_do_not_depend_on_when_the_sweep_runs():
    """The lazy rule: a task's own event times decide whether its state is over, so other
    tasks' events, and whether the sweep got to it first, change none of its decisions (an
    event is late, and may find its task freed, only once its partition's watermark has
    passed the task's deadline)."""
    mine = [intent("a", 0.0), end("a", 1.0), act("a", 1.0 + R - 1), act("a", 1.0 + R + 1),
            act("a", 1.0 + R + 2)]
    others = [intent("z", 5.0), act("z", 1.0 + R - 0.5)]
    alone = feed(engine(), mine)
    mixed = [d for d in feed(engine(), [*mine[:2], *others, *mine[2:]]) if d["task_id"] == "a"]
    no_sweep = engine()
    no_sweep.retention.batch = 0
    lazy_only = feed(no_sweep, [*mine[:2], *others, *mine[2:]])
    lazy_only = [d for d in lazy_only if d["task_id"] == "a"]
    assert orjson.dumps(alone) == orjson.dumps(mixed) == orjson.dumps(lazy_only)
    assert [d["verdict"] for d in alone] == ["allow", "allow", "revoke"]


def test_memory_stays_bounded_under_churn():
    eng = engine(profile="full")
    sizes = []
    t = 0.0
    for rnd in range(10):
        for i in range(1000):
            tid = f"r{rnd}-{i}"
            feed(eng, [intent(tid, t), act(tid, t + 0.1), end(tid, t + 0.2)])
            t += 0.05  # 1,000 tasks take 50 s of event time; retention is 100 s
        sizes.append((len(eng.store), len(eng.registry)))
    # At most about (retention / 50 s + 1) rounds of tasks are ever held.
    assert max(s for s, _ in sizes) <= 3 * 1000 + retention.SWEEP_BATCH
    assert sizes[-1][0] <= 3 * 1000 and sizes[-1][1] <= 3 * 1000
    assert eng.retention.stats()["indexed"] == len(eng.store)
    assert eng.retention.stats()["heap_entries"] <= 2 * len(eng.store)


def test_a_parent_entry_stays_while_a_child_runs_so_cascades_still_reach_it():
    eng = engine()
    feed(eng, [intent("p", 0.0, depth=2), intent("c", 1.0, parent="p", depth=1),
               intent("g", 2.0, parent="c", tools=("read_inbox",)), end("c", 3.0)])
    feed(eng, [act("p", 3.0 + R + 1)])
    assert "c" not in eng.store
    assert eng.registry["c"][retention.FREED] is True  # kept: the link from p to g
    d = feed(eng, [act("p", 3.0 + R + 2, tool="send_money")])  # p hijacked: cascade
    # Reaches g through c's kept link (and c's credential, as before c was freed).
    assert [c["task_id"] for c in d[0]["cascade"]] == ["c", "g"]
    # When the grandchild goes, the freed link above it goes too; the live parent stays.
    feed(eng, [end("g", 3.0 + R + 3), act("p", 3.0 + 2 * R + 4)])
    assert "g" not in eng.registry and "c" not in eng.registry and "p" in eng.registry


def test_a_cascade_over_freed_children_does_not_fail():
    eng = engine()
    feed(eng, [intent("p", 0.0, depth=1), intent("c", 1.0, parent="p", tools=("read_inbox",)),
               end("c", 2.0), act("p", 2.0 + R + 1)])
    assert "c" not in eng.registry and "c" in eng.registry["p"]["children"]
    d = feed(eng, [act("p", 2.0 + R + 2, tool="send_money")])
    assert d[0]["verdict"] == "revoke" and d[0]["cascade"] == []


class BytesStore(MutableMapping):
    """Like the worker's JsonStore over a Faust table: every read is a fresh copy, so a change
    that is not written back is lost, and deletes are recorded (tombstones)."""

    def __init__(self):
        self.data: dict[bytes, bytes] = {}
        self.tombstones: list[str] = []

    def __getitem__(self, key):
        return orjson.loads(self.data[key.encode()])

    def get(self, key, default=None):
        raw = self.data.get(key.encode())
        return default if raw is None else orjson.loads(raw)

    def __setitem__(self, key, value):
        self.data[key.encode()] = orjson.dumps(value)

    def __delitem__(self, key):
        del self.data[key.encode()]
        self.tombstones.append(key)

    def __iter__(self):
        return (k.decode() for k in list(self.data))

    def __len__(self):
        return len(self.data)


def test_a_store_that_copies_on_read_frees_the_same_tasks_with_the_same_decisions():
    events = [intent("p", 0.0, depth=1), intent("c", 1.0, parent="p", tools=("read_inbox",)),
              end("c", 2.0)]
    for i in range(30):
        events += [intent(f"t{i}", 3.0 + i * 20, expires=3.0 + i * 20 + 10),
                   act(f"t{i}", 4.0 + i * 20), act(f"g{i}", 5.0 + i * 20)]
    events += [act("p", 700.0, tool="send_money")]
    plain = engine()
    tables = engine(BytesStore(), BytesStore())
    assert orjson.dumps(feed(plain, events)) == orjson.dumps(feed(tables, events))
    assert set(plain.store) == set(tables.store) and set(plain.registry) == set(tables.registry)
    assert plain.registry == {k: tables.registry[k] for k in tables.registry}
    assert len(tables.store.tombstones) > 40
    assert sorted(tables.store.tombstones) == sorted(
        k for k in {e["task_id"] for e in events} if k not in plain.store)


def test_inline_assess_treats_a_freed_task_as_without_intent():
    eng = engine()
    feed(eng, [intent("a", 0.0), end("a", 1.0)])
    assert eng.assess(act("a", 1.0 + R - 1))["reasons"][0]["code"] == "after_task_end"
    late = eng.assess(act("a", 1.0 + R + 1))
    assert late["allowed"] is False and late["reasons"][0]["code"] == "no_intent"


def test_engine_default_and_setting():
    assert Engine().retention.seconds == retention.DEFAULT_RETENTION_SECONDS == 3600.0
    assert Engine(retention_seconds=5.0).retention.seconds == 5.0
    assert Settings().retention_seconds == 3600.0


def test_retention_setting_from_env(monkeypatch):
    monkeypatch.setenv("INTENTWATCH_RETENTION_SECONDS", "600")
    assert Settings.from_env().retention_seconds == 600.0
    monkeypatch.setenv("INTENTWATCH_RETENTION_SECONDS", "-1")
    with pytest.raises(ValueError, match="INTENTWATCH_RETENTION_SECONDS"):
        Settings.from_env()
    monkeypatch.setenv("INTENTWATCH_RETENTION_SECONDS", "soon")
    with pytest.raises(ValueError, match="INTENTWATCH_RETENTION_SECONDS"):
        Settings.from_env()


def running_by_scan(eng) -> int:
    """What running() must equal: a scan of the store by the same rule."""
    mark = eng.retention.watermark
    return sum(1 for t in eng.store.values() if t["ended_at"] is None and "end_held" not in t
               and (t["intent"] is None or t["intent"].get("expires_at") is None
                    or t["intent"]["expires_at"] >= mark))


def test_running_tasks_are_the_held_ones_not_ended_nor_expired():
    eng = engine()
    feed(eng, [intent("a", 0.0), intent("b", 1.0, expires=10.0), intent("c", 2.0),
               act("held", 3.0)])   # "held": actions before any intent, a task all the same
    assert eng.retention.running() == running_by_scan(eng) == 4
    feed(eng, [end("a", 5.0)])          # ended: still held (retention), no longer running
    assert "a" in eng.store
    assert eng.retention.running() == running_by_scan(eng) == 3
    feed(eng, [act("c", 11.0)])         # the watermark passes b's expires_at
    assert "b" in eng.store
    assert eng.retention.running() == running_by_scan(eng) == 2
    feed(eng, [act("c", 11.0 + R + 1, n=1)])  # b and the held task freed: c remains
    assert "b" not in eng.store and "held" not in eng.store
    assert eng.retention.running() == running_by_scan(eng) == 1


def test_a_task_whose_end_waits_for_its_intent_is_not_running():
    eng = engine()
    feed(eng, [act("g", 1.0), act("h", 1.0)])
    assert eng.retention.running() == running_by_scan(eng) == 2
    feed(eng, [end("g", 2.0)])          # its end waits, undecided: ended all the same
    assert "end_held" in eng.store["g"]
    assert eng.retention.running() == running_by_scan(eng) == 1
    restarted = engine(store=dict(eng.store))
    restarted.retention.rebuild()
    assert restarted.retention.running() == 1


def test_running_tasks_follow_the_store_after_a_rebuild():
    """After a restart the count comes from the store; tasks that left it (their partition
    went to another worker) stop counting at the next recovery."""
    store = {}
    first = engine(store=store)
    feed(first, [intent("a", 0.0), intent("b", 0.0), intent("c", 0.0), end("c", 1.0)])
    restarted = engine(store=dict(store))
    assert restarted.retention.rebuild() == 1     # c's deadline
    assert restarted.retention.running() == 2
    del restarted.store["b"]                        # b's partition revoked
    restarted.retention.rebuild()
    assert restarted.retention.running() == 1


def test_a_held_end_is_freed_by_retention_with_a_no_intent_decision():
    eng = engine()
    # Its end waits for an intent of its lane (0) that never comes past it.
    assert feed_on(eng, 0, [act("g", 1.0), end("g", 2.0)]) == []
    assert eng.store["g"]["end_held"] == {"lane": 0, "until": 2.0 + eng.allowed_lateness}
    # The engine's watermark (any lane) passes its deadline: freed, everything decided.
    d = feed_on(eng, 1, [act("other", 2.0 + R + 1)])
    assert [(x["event_id"], x["reasons"][0]["code"] if x["reasons"] else None) for x in d] == [
        ("g-1.0-0", "no_intent"), ("g-end", None)]
    assert "g" not in eng.store and eng.retention.stats()["ends_waiting"] == 0


def test_the_index_of_held_ends_is_rebuilt_after_a_restart():
    store = {}
    first = engine(store)
    assert feed_on(first, 3, [act("g", 1.0), end("g", 2.0)]) == []
    assert feed_on(first, 2, [act("h", 1.0), end("h", 2.0)]) == []
    # A new engine over the recovered store: no intent read on any lane yet, so it waits.
    restored = {k: orjson.loads(orjson.dumps(v)) for k, v in store.items()}
    second = engine(restored)
    assert [x["task_id"] for x in feed_on(second, 3, [intent("z", 2.0)])] == ["z"]
    assert second.retention.stats()["ends_waiting"] == 2
    # Lane 3's intents pass g's end: g is released from the rebuilt index; h (lane 2) waits.
    d = feed_on(second, 3, [intent("y", 10.0)])
    assert [(x["task_id"], x["event_type"]) for x in d] == [
        ("y", "task.intent"), ("g", "agent.action"), ("g", "task.end")]
    assert d[1]["reasons"][0]["code"] == "no_intent"
    assert "end_held" not in second.store["g"] and second.store["g"]["ended_at"] == 2.0
    # h's partition goes to another worker: a rebuild after the recovery forgets its end.
    del second.store["h"]
    second.retention.rebuild()
    assert second.retention.stats()["ends_waiting"] == 0
    assert feed_on(second, 2, [intent("x", 10.0)])[1:] == []


def test_an_intent_over_a_rebuilt_held_end_decides_it_once():
    store = {}
    first = engine(store)
    feed_on(first, 1, [act("g", 1.0, tool="send_money"), end("g", 2.0)])
    second = engine({k: orjson.loads(orjson.dumps(v)) for k, v in store.items()})
    d = feed_on(second, 1, [intent("g", 0.5)])
    assert [x["event_type"] for x in d] == ["task.intent", "agent.action", "task.end"]
    assert d[1]["verdict"] == "revoke" and d[1]["command"] is not None
    assert all(r["code"] != "no_intent" for x in d for r in x["reasons"])
    assert feed_on(second, 1, [intent("y", 100.0)])[1:] == []  # nothing left to release


def feed_on(eng, lane, events):
    return [d for e in events for d in eng.process(copy.deepcopy(e), lane)]
