"""The recovery watchdog's decision (streams/recovery_watchdog.py). Faust's recovery object
is stood in for by plain attributes: what is tested is which partitions count as stalled and
that a stall exits with code 75; the stall itself could not be produced on demand (see the
module's docstring), so no broker test triggers it."""

from __future__ import annotations

from collections import Counter
from time import monotonic
from types import SimpleNamespace

from faust.types import TP

from streams import recovery_watchdog
from streams.recovery_watchdog import EXIT_RECOVERY_STALLED, check, stalled_partitions

A, B, C = (TP("iw-tasks-changelog", n) for n in range(3))


def test_a_partition_with_records_left_and_none_received_for_the_stall_time_is_stalled():
    remaining = {A: 300, B: 250, C: 0}
    received = {B: 95.0}          # B had a record 5 s ago; A none since the start
    assert stalled_partitions(100.0, 70.0, remaining, received, 20.0) == [A]
    # C has nothing left to read: done, not stalled, however long ago its last record came.
    assert stalled_partitions(200.0, 70.0, remaining, {B: 195.0}, 20.0) == [A]


def test_no_stall_before_the_stall_time_nor_outside_a_recovery():
    assert stalled_partitions(85.0, 70.0, {A: 300}, {}, 20.0) == []
    assert stalled_partitions(500.0, None, {A: 300}, {}, 20.0) == []
    # A record received before this recovery started does not count as recent.
    assert stalled_partitions(100.0, 70.0, {A: 300}, {A: 69.0}, 20.0) == [A]


def fake_app(in_recovery: bool, started_ago: float, remaining: dict, received_ago: dict):
    now = monotonic()
    recovery = SimpleNamespace(
        in_recovery=in_recovery, _recovery_started_at=now - started_ago,
        active_remaining=lambda: Counter(remaining),
        _active_events_received_at={tp: now - ago for tp, ago in received_ago.items()})
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery))


def test_a_stall_is_logged_and_exits_with_75_and_a_live_recovery_does_not(caplog):
    exits = []
    stalled = fake_app(True, 30.0, {A: 712, B: 0}, {B: 1.0})
    assert check(stalled, 20.0, exit=exits.append) == [A]
    assert exits == [EXIT_RECOVERY_STALLED] == [75]
    assert "iw-tasks-changelog[0]" in caplog.text and "712" in caplog.text
    exits.clear()
    assert check(fake_app(True, 30.0, {A: 712}, {A: 2.0}), 20.0, exit=exits.append) == []
    assert check(fake_app(False, 300.0, {A: 712}, {}), 20.0, exit=exits.append) == []
    assert exits == []


def test_the_worker_starts_the_watch_before_its_first_recovery():
    import asyncio

    from monitor.config import Settings
    from streams.app import create_app

    app = create_app(Settings(app_id="iw-watchdog-wiring"))
    (task,) = app.before_recovery_tasks  # started by RewindingApp.on_start
    watch = task()
    assert watch.cr_code is recovery_watchdog.watch.__code__
    watch.close()
    assert recovery_watchdog.CHECK_SECONDS <= Settings().recovery_stall_seconds / 4

    # A failing check (Faust's internals changed) is logged; the watch goes on.
    async def two_checks():
        broken = SimpleNamespace(tables=None)
        runner = asyncio.ensure_future(recovery_watchdog.watch(broken, 20.0, interval=0.01))
        await asyncio.sleep(0.05)
        assert not runner.done()
        runner.cancel()
    asyncio.run(two_checks())
