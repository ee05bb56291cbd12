"""The worker decides batches of records: same decisions and metrics as one record at a time,
task state in each record's own changelog partition (so it survives a restart that splits the
partitions between two workers), dead letters that say where their record came from."""

from __future__ import annotations

import asyncio
import io
import types

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.streams import current_event

from monitor.catalog import Catalog
from monitor.metrics import REGISTRY
from monitor.pipeline import Pipeline
from monitor.profiles import build_engine
from monitor.replay import read_lines, replay
from streams import local
from streams.app import JsonStore, as_current_events
from streams.cli import use_event_loop
from streams.produce import produce

from . import synthetic
from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE
from .test_live_worker import MALFORMED, count, read_outputs, tmp_catalog


def sample(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_a_batch_decides_and_counts_like_one_record_at_a_time():
    records = [(raw, None) for _, raw in read_lines(SAMPLE_TRACE)]
    records[3:3] = [(raw, None) for raw, _ in MALFORMED[:2]]
    records.append((b'{"v": 1, "type": "task.end", "task_id": "a", "event_time": 1}', b"b"))
    catalog = Catalog.load(SAMPLE_CATALOG)
    one_by_one = Pipeline(build_engine("full", catalog))
    expected = [one_by_one.handle(raw, key) for raw, key in records]

    before = {v: sample("intentwatch_decisions_total", {"verdict": v})
              for v in ("allow", "alert", "revoke")}
    events = sample("intentwatch_decision_latency_seconds_count")
    dead = sample("intentwatch_dead_letters_total", {"reason": "key_mismatch"})
    results = Pipeline(build_engine("full", catalog)).handle_batch(iter(records))

    assert [(ds, err and err.code) for ds, err in results] == [
        (ds, err and err.code) for ds, err in expected]
    verdicts = [d["verdict"] for ds, _ in results for d in ds]
    for v, n in before.items():
        assert sample("intentwatch_decisions_total", {"verdict": v}) - n == verdicts.count(v)
    decided = sum(err is None for _, err in results)
    assert sample("intentwatch_decision_latency_seconds_count") - events == decided
    assert sample("intentwatch_dead_letters_total", {"reason": "key_mismatch"}) - dead == 1


class FakeEvent:  # Faust's events can be weakly referenced; SimpleNamespace cannot
    def __init__(self, value: bytes, partition: int = 0, key: bytes = b"k"):
        self.value = value
        self.message = types.SimpleNamespace(key=key, partition=partition)


def test_each_record_is_fausts_current_event_while_it_is_decided():
    events = [FakeEvent(b"v%d" % i, partition=i) for i in range(3)]
    seen = [(value, current_event(), lane) for value, _, lane in as_current_events(events)]
    assert seen == [(e.value, e, i) for i, e in enumerate(events)]  # the lane: its partition
    assert current_event() is None  # nothing is left current after the batch


def test_the_stores_keep_each_change_for_its_partition():
    def table(name: str):
        changelog = types.SimpleNamespace(get_topic_name=lambda: f"app-{name}-changelog")
        return types.SimpleNamespace(name=name, data={}, changelog_topic=changelog)

    registry, tasks = JsonStore(table("registry"), by_key=False), JsonStore(table("tasks"),
                                                                            by_key=True)
    with pytest.raises(RuntimeError):
        registry["t1"] = {"n": 0}  # no record being decided: no partition to send it to
    assert registry.table.data == {}
    events = [FakeEvent(b"a", partition=2, key=b"t1"), FakeEvent(b"b", partition=3, key=b"t2")]
    records = as_current_events(events)
    next(records)
    registry["t1"] = tasks["t1"] = {"n": 1}
    registry["t3"] = tasks["t3"] = {"n": 3}
    next(records)
    registry["t2"] = tasks["t2"] = {"n": 2}
    del registry["t1"], tasks["t1"]
    tasks["t3"] = {"n": 33}                 # written again in the same batch
    assert list(records) == []  # the batch is over: no current event any more
    for store in (registry, tasks):
        assert dict(store.items()) == {"t2": {"n": 2}, "t3": store["t3"]}
        assert store.table.data == {}       # encoded once per batch, at changes()
    # The registry follows the record being decided; a task's state goes to the partition of
    # its own record, other tasks' by key (partition None: the producer's partitioner), so
    # freeing another task's state deletes it in its own partition.
    assert registry.changes() == [(b"t1", None, 3), (b"t3", b'{"n":3}', 2),
                                  (b"t2", b'{"n":2}', 3)]
    assert tasks.changes() == [(b"t1", None, None), (b"t3", b'{"n":33}', None),
                               (b"t2", b'{"n":2}', 3)]
    assert registry.changes() == tasks.changes() == []
    assert tasks.table.data == {b"t2": b'{"n":2}', b"t3": b'{"n":33}'}


def test_the_table_holds_exactly_the_bytes_of_each_state():
    import tracemalloc
    data: dict[bytes, bytes] = {}
    store = JsonStore(types.SimpleNamespace(name="tasks", data=data, changelog_topic=types.
                      SimpleNamespace(get_topic_name=lambda: "c")), by_key=True)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(200):
        store[f"t{i}"] = {"goal": "x" * 1500}
    store.changes()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # (orjson's own bytes would keep its 16 KB output buffer each: over 3 MB here)
    assert held < 200 * 4000, held


def test_the_task_store_decodes_a_state_once_while_the_table_holds_its_bytes():
    data: dict[bytes, bytes] = {b"t": b'{"n":1}'}
    store = JsonStore(types.SimpleNamespace(name="tasks", data=data, changelog_topic=types.
                      SimpleNamespace(get_topic_name=lambda: "c")), by_key=True, cached=2)
    first = store.get("t")
    assert store.get("t") is first          # cached: not decoded again
    data[b"t"] = b'{"n":2}'                 # e.g. recovered from the changelog: decoded again
    assert store.get("t") == {"n": 2} and store.get("t") is not first
    data.update({b"u": b"{}", b"v": b"{}"})
    again = store.get("t")
    store.get("u"), store.get("v")          # the cache holds two: t is dropped
    assert store.get("t") == again and store.get("t") is not again
    assert store.get("missing") is None and "missing" not in store


def test_the_worker_runs_on_uvloop_when_it_is_installed():
    try:
        assert use_event_loop("asyncio") == "asyncio"
        assert not type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
        pytest.importorskip("uvloop")
        assert use_event_loop("auto") == "uvloop"
        assert type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
    finally:
        asyncio.set_event_loop_policy(None)


# -- on the broker -------------------------------------------------------------------------

PARTITIONS = 4
TASKS = [f"bt-{i}" for i in range(16)]


def partition_of(key: bytes) -> int:
    """Where the producers put a task's records (aiokafka's and Java's default partitioner)."""
    return DefaultPartitioner()(key, list(range(PARTITIONS)), list(range(PARTITIONS)))


def first_part(tid: str, t0: float) -> list[dict]:
    return synthetic.task(tid, ["read_inbox"], "read my mail", t0, [
        ("read_inbox", {}, "3 new messages")])


def late_action(tid: str, t0: float) -> dict:
    """An action after the task's end: only the task's recovered state can say so."""
    action = first_part(tid, t0)[1]
    return dict(action, event_id=f"{tid}-late", call_id=f"{tid}-late", event_time=t0 + 50)


def router(worker) -> dict:
    """The worker's view of the group: canonical URL -> changelog topic -> partitions."""
    return orjson.loads(worker.get("/router/"))


def wait_for_split(worker, changelog: str, timeout: float = 60.0) -> None:
    async def poll() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            owners = [parts.get(changelog) for parts in router(worker).values()]
            if len([p for p in owners if p]) == 2:
                return
            assert loop.time() < deadline, f"no two owners of {changelog}: {owners}"
            await asyncio.sleep(0.5)
    asyncio.run(poll())


@pytest.mark.kafka
def test_task_state_survives_a_restart_onto_two_workers_in_every_partition(start_worker, tmp_path):
    assert {partition_of(t.encode()) for t in TASKS} == set(range(PARTITIONS))
    catalog = tmp_catalog()
    prefix = f"batch-{tmp_path.name[-12:]}"
    first = [e for i, tid in enumerate(TASKS) for e in first_part(tid, float(i))]
    lines = [(0, orjson.dumps(e)) for e in first]
    lines.insert(5, (0, MALFORMED[0][0]))  # a dead letter in the middle of a batch
    expected = replay(lines, build_engine("full", Catalog.load(catalog)), 512 * 1024,
                      io.BytesIO(), io.BytesIO())["decisions"]

    worker = start_worker(prefix, catalog=catalog, model_snapshot_seconds=600)
    s = worker.settings
    assert ("event loop: uvloop" if _has_uvloop() else "event loop: asyncio") in \
        worker.log.read_text()
    asyncio.run(produce(lines, s))
    records = read_outputs(worker, lambda rs: count(rs, s.topic_decisions) >= len(expected)
                           and count(rs, s.topic_dead_letters) >= 1)
    verdicts = lambda ds: sorted((d["decision_id"], d["verdict"]) for d in ds)
    assert verdicts(local.values(records, s.topic_decisions)) == verdicts(expected)
    assert local.stop_worker(worker.proc) == 0

    # Each changelog record (task state and registry entry) is in its task's input partition.
    app_id = f"iw-{prefix}"
    changelogs = [f"{app_id}-tasks-changelog", f"{app_id}-registry-changelog"]
    wanted = {(name, tid.encode()) for name in changelogs for tid in TASKS}
    inputs = asyncio.run(local.read_topics(
        worker.bootstrap, [s.topic_intents, s.topic_actions, *changelogs],
        lambda rs: wanted <= {(r.topic, r.key) for r in rs}, timeout=30))
    assert wanted <= {(r.topic, r.key) for r in inputs}
    for r in inputs:
        if r.key is not None:
            assert r.partition == partition_of(r.key), (r.topic, r.key, r.partition)
    # The dead letter names its own record's topic, partition and offset.
    (dead,) = [r for r in records if r.topic == s.topic_dead_letters]
    (bad,) = [r for r in inputs if r.value == MALFORMED[0][0]]
    headers = dict(dead.headers)
    assert (headers["x-deadletter-topic"], headers["x-deadletter-partition"],
            headers["x-deadletter-offset"]) == (
        bad.topic.encode(), str(bad.partition).encode(), str(bad.offset).encode())

    # Two workers now: each recovers and decides only its own partitions.
    workers = [start_worker(prefix, catalog=catalog, model_snapshot_seconds=600,
                            data_dir=tmp_path / f"data-{n}") for n in (2, 3)]
    wait_for_split(workers[0], changelogs[0])
    late = [late_action(tid, float(i)) for i, tid in enumerate(TASKS)]
    asyncio.run(produce([(0, orjson.dumps(e)) for e in late], s))
    records = read_outputs(workers[0], lambda rs: count(rs, s.topic_decisions)
                           >= len(expected) + len(late), timeout=90)
    after = [d for d in local.values(records, s.topic_decisions)
             if (d["event_id"] or "").endswith("-late")]
    assert sorted(d["event_id"] for d in after) == sorted(e["event_id"] for e in late)
    for d in after:
        assert d["verdict"] == "revoke", d
        assert "after_task_end" in {r["code"] for r in d["reasons"]}, d
    for w in workers:  # both took part
        assert 'intentwatch_events_total{type="agent.action"}' in w.get("/metrics").decode()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
