"""Faults on the real broker (benchmarks/faults.py runs them, these tests assert): a worker
killed with SIGKILL mid-stream, a worker joining and one leaving while events flow, the broker
restarted under load. After each: the revoke commands are the replay's, by id, none missing and
none extra; no decision is lost; task and model state came back."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from benchmarks import faults
from monitor.contracts import decode
from monitor.profiles import build_engine
from streams import local
from streams.produce import ensure_topics

from . import synthetic

TASKS = 600  # 3,600 events, 150 violations: a few seconds of stream at the paced rate


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return faults.write_catalog(tmp_path_factory.mktemp("faults-catalog"))


def assert_guarantees(run: faults.Run) -> None:
    figures = run.figures()
    assert figures["violations"] >= TASKS // 4
    assert figures["commands_missing"] == 0 and figures["commands_unexpected"] == 0, figures
    assert figures["commands_seen"] == figures["commands_expected"]
    assert figures["decisions_lost"] == 0 and figures["decisions_unexpected"] == 0, figures
    # An event read before its task's intent (the other topic: likely after a rebalance) is
    # decided no_intent and then decided again against the intent; none is left at the first.
    assert figures["left_without_intent"] == 0, figures
    # A re-delivered intent is the same intent, not a redeclaration (the bug this found).
    assert not [d for d in run.decisions if any(
        r["code"] == "intent_redeclared" for r in d["reasons"])]
    # Task state came back from the changelog: the probes' tasks ended, or were revoked,
    # before the fault, and only their recovered state says so.
    after_end = run.decision_of(run.probes["after_end"])
    assert "after_task_end" in {r["code"] for r in after_end["reasons"]}
    after_revoke = run.decision_of(run.probes["after_revoke"])
    assert "task_revoked" in {r["code"] for r in after_revoke["reasons"]}
    # Model state came back (snapshot + the records read again): only a sequence model that
    # remembers the trace's clean tasks finds this send improbable (a fresh one does not:
    # test_the_odd_probe_needs_a_trained_model).
    odd = run.decision_of(run.probes["odd_send"])
    assert "improbable_move" in {r["code"] for r in odd["reasons"]}


@pytest.mark.kafka
def test_a_worker_killed_mid_stream_loses_nothing_after_its_restart(start_worker, catalog,
                                                                    tmp_path):
    scenario = faults.Scenario("sigkill", start_worker, faults.fault_trace(TASKS), catalog,
                               f"kill-{tmp_path.name[-12:]}")
    run = scenario.run(faults.kill_and_restart(scenario))
    assert_guarantees(run)


@pytest.mark.kafka
def test_a_worker_joining_and_one_leaving_lose_nothing(start_worker, catalog, tmp_path):
    # Slow enough that the trace is still being sent when the second worker is up.
    scenario = faults.Scenario("join_leave", start_worker, faults.fault_trace(TASKS), catalog,
                               f"join-{tmp_path.name[-12:]}", rate=250.0)
    run = scenario.run(faults.join_then_leave(scenario), at=0.25)
    assert run.sent_after_fault > 0  # the first worker left while events flowed
    assert_guarantees(run)


@pytest.mark.kafka
def test_a_worker_restarted_on_a_backlog_decides_all_of_it(kafka, start_worker, catalog,
                                                           tmp_path):
    """A worker decides half of a trace and is killed; the other half waits for the next
    one, which recovers the table first. Faust hands records on while it seeks at the end
    of the rebalance and then drops the ones not yet decided, and aiokafka does not rewind
    a partition without a committed offset: this lost part of the backlog (the SIGKILL
    test, 6 runs of 8), which streams/rewind.py repairs."""
    lines = faults.fault_trace(TASKS)
    half = len(lines) // 2
    first_half = {d["decision_id"] for d in faults.replayed(lines[:half], catalog)}
    every = {d["decision_id"] for d in faults.replayed(lines, catalog)}
    prefix = f"backlog-{tmp_path.name[-12:]}"
    first = start_worker(prefix, catalog=catalog, **faults.WORKER_SETTINGS)
    settings = first.settings
    asyncio.run(ensure_topics(settings, [settings.topic_intents, settings.topic_actions]))
    reader = faults.OutputReader(kafka, settings)
    reader.start()

    def send(part: list[bytes]) -> None:
        producer = faults.PacedProducer(part, settings, rate=100_000.0)
        producer.start()
        producer.wait()

    def wait_for(ids: set[str]) -> None:
        try:
            reader.wait_for(lambda: ids <= reader.decided_ids(), 90, "the decisions")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {len(ids - reader.decided_ids())} of {len(ids)} "
                                 "missing") from None
    try:
        send(lines[:half])
        wait_for(first_half)
        first.proc.kill()
        first.proc.wait()
        send(lines[half:])
        start_worker(prefix, catalog=catalog, **faults.WORKER_SETTINGS)
        wait_for(every)
    finally:
        reader.stop()


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory):
    """A broker of this module's own: restarting the session's would disturb other tests."""
    state = tmp_path_factory.mktemp("kafka-restart")
    bootstrap = local.start_broker(state)
    yield bootstrap, state
    local.stop_broker(state)


@pytest.mark.kafka
def test_a_broker_restart_under_load_loses_and_repeats_nothing(own_broker, catalog, tmp_path):
    bootstrap, state = own_broker
    workers = faults.Workers(bootstrap, tmp_path)
    try:
        scenario = faults.Scenario("broker_restart", workers, faults.fault_trace(TASKS),
                                   catalog, f"restart-{tmp_path.name[-12:]}")
        run = scenario.run(faults.restart_broker(state))
    finally:
        workers.stop_all()
    assert_guarantees(run)
    assert run.figures()["command_duplicates"] == 0


def test_the_odd_probe_needs_a_trained_model(catalog):
    """The model probe of the tests above proves something: a fresh engine does not flag it,
    one that has seen the trace does."""
    lines = faults.fault_trace(TASKS)
    probe = [orjson.dumps(e) for e in faults.odd_task(10**6)]
    send_id = faults.odd_task(0)[1]["event_id"]
    for seen, flagged in ((lines, True), ([], False)):
        decisions = {d["event_id"]: d for d in faults.replayed(seen + probe, catalog)}
        codes = {r["code"] for r in decisions[send_id]["reasons"]}
        assert ("improbable_move" in codes) == flagged


def test_the_odd_probe_read_before_its_intent_waits_for_it(catalog):
    """After a rebalance a worker can read the probe's send and end before its intent (CI
    saw it once): no intent of its lane is past its end, so the end waits for the intent and
    everything is decided once, against it, as the replay decides it."""
    lines = faults.fault_trace(TASKS)
    probe = faults.odd_task(10**6)
    expected = faults.replayed(lines + [orjson.dumps(e) for e in probe], catalog)
    engine = build_engine("full", faults.Catalog.load(catalog))
    for raw in lines:
        engine.process(decode(raw), 1)
    seen = [d for e in probe[1:] + probe[:1] for d in engine.process(decode(orjson.dumps(e)), 1)]
    assert [d for d in seen if "no_intent" in faults._codes(d)] == []
    by_id = lambda ds: sorted(ds, key=lambda d: d["decision_id"])
    assert by_id(seen) == by_id([d for d in expected if d["task_id"] == probe[0]["task_id"]])
    assert faults.no_intent_copies(expected, seen) == set()


def test_the_odd_probe_released_before_its_intent_counts_as_decided_again(catalog):
    """Its lane's intents past its end (its own intent produced late): the send is decided
    no_intent first, then again against the intent. The run's checks read the latest copy,
    and count a decision left at the first one, and every one that had such a copy."""
    lines = faults.fault_trace(TASKS)
    probe = faults.odd_task(10**6)
    other = dict(probe[0], task_id="probe-other", event_time=probe[-1]["event_time"] + 60)
    expected = faults.replayed(lines + [orjson.dumps(e) for e in probe + [other]], catalog)
    engine = build_engine("full", faults.Catalog.load(catalog))
    for raw in lines:
        engine.process(decode(raw), 1)
    seen = [d for e in probe[1:] + [other] + probe[:1]
            for d in engine.process(decode(orjson.dumps(e)), 1)]
    send_id = probe[1]["event_id"]
    run = faults.Run("reordered", len(lines), expected, seen)
    assert "improbable_move" in {r["code"] for r in run.decision_of(send_id)["reasons"]}
    first_copies = list({d["decision_id"]: d for d in reversed(seen)}.values())
    assert {r["code"] for r in next(d for d in first_copies if d["event_id"] == send_id)
            ["reasons"]} == {"no_intent"}
    actions = {f"agent.action:{e['event_id']}" for e in probe if e["type"] == "agent.action"}
    assert f"agent.action:{send_id}" in actions
    assert faults.left_without_intent(expected, first_copies) == actions
    assert faults.left_without_intent(expected, seen) == set()
    assert faults.no_intent_copies(expected, seen) == actions
    assert run.figures()["no_intent_copies"] == len(actions)


def test_an_intent_read_again_after_its_task_ended_is_not_a_redeclaration():
    """At least once: after a crash the worker reads again records it had decided, and a
    task's state may already hold its end. The same intent is no redeclaration then; a
    different one still is."""
    engine = build_engine("full")
    events = [decode(orjson.dumps(e)) for e in synthetic.benign(1, 0.0)]
    for event in events:
        engine.process(event)
    again = engine.process(events[0])[0]
    assert again["reasons"] == [] and again["verdict"] == "allow"
    wider = dict(events[0], tools=["read_inbox", "send_email", "send_money"])
    codes = {r["code"] for r in engine.process(wider)[0]["reasons"]}
    assert "intent_redeclared" in codes


def test_a_stalled_scenario_quotes_the_workers_last_warnings(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("[INFO] Ready\n"
                   + "".join(f"[WARNING] No event received for active tp {i}\n" for i in range(20))
                   + "[ERROR] Crashed\n")
    quoted = faults.last_warnings([log, log, tmp_path / "never-written.log"], keep=3).splitlines()
    assert quoted == ["worker.log: [WARNING] No event received for active tp 18",
                      "worker.log: [WARNING] No event received for active tp 19",
                      "worker.log: [ERROR] Crashed"]
    assert faults.last_warnings([tmp_path / "never-written.log"]) == "(none)"
