"""Smoke test of the broker benchmark (`python -m benchmarks.broker --quick`) on the session's
broker: structure and sanity only, no timing thresholds."""

from __future__ import annotations

import orjson
import pytest

from benchmarks import broker
from benchmarks.broker_trace import expected_decisions
from benchmarks.faust_floor import event_id
from benchmarks.paced_latency import quantile, summary_ms
from benchmarks.throughput import rates


def test_expected_decisions_counts_held_actions():
    def line(**e) -> bytes:
        return orjson.dumps({"v": 1, "event_time": 1.0, **e})

    intent = line(type="task.intent", task_id="a", agent_id="x", workload_id="w", goal="g",
                  tools=["t"])
    action = line(type="agent.action", task_id="a", agent_id="x", tool="t", args={},
                  event_id="a1", phase="requested")
    orphan = line(type="agent.action", task_id="b", agent_id="x", tool="t", args={},
                  event_id="b1", phase="requested")
    got = expected_decisions([action, intent, orphan, b"not json"])
    assert got["valid"] == 3
    assert got["dead_letters"] == 1
    assert got["held_without_intent"] == 1   # b's action waits for an intent that never comes
    assert got["decisions"] == 2
    assert got["exact"] is False


def test_quantiles_and_rates():
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.999) == 4.0
    s = summary_ms([0.001 * i for i in range(1, 1001)])
    assert s["count"] == 1000
    assert s["p50"] == pytest.approx(500.0)
    assert s["p50"] <= s["p99"] <= s["p99.9"] <= s["max"]
    r = rates([1000 + 10 * i for i in range(101)], [])
    assert r["events_per_second"] == pytest.approx(100.0)
    assert len(r["events_per_second_by_tenth"]) == 10


def test_ratios_and_the_floor_decode():
    e2e = {"worker": {"events_per_second": 100.0}, "baseline": {"events_per_second": 1000.0},
           "faust_floor": {"events_per_second": 400.0}}
    assert broker._ratios(e2e) == {"ratio_worker_to_baseline": 0.1,
                                   "ratio_worker_to_faust_floor": 0.25,
                                   "ratio_faust_floor_to_baseline": 0.4}
    del e2e["faust_floor"]   # skipped: only the goal ratio
    assert broker._ratios(e2e) == {"ratio_worker_to_baseline": 0.1}
    assert event_id(b'{"type": "agent.action", "event_id": "e1"}') == "e1"
    assert event_id(b"not json") is None and event_id(b"[1]") is None


@pytest.mark.kafka
def test_quick_broker_benchmark(kafka, tmp_path, capsys):
    out = tmp_path / "broker.json"
    code = broker.main(["--quick", "--bootstrap", kafka, "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ratio worker/baseline" in printed and "worker: decision" in printed
    assert "Faust floor (decode only)" in printed and "ratio worker/Faust floor" in printed
    result = orjson.loads(out.read_bytes())

    for key in ("commit", "command", "machine", "placement", "trace", "limits"):
        assert result[key]
    assert result["machine"]["cpus"] >= 1 and result["machine"]["mem_total_mib"] > 0

    e2e = result["end_to_end"]
    assert e2e["events"] == broker.QUICK["events"] == result["trace"]["events"]
    assert e2e["expected"]["exact"] and e2e["expected"]["dead_letters"] == 0
    work, base = e2e["worker"], e2e["baseline"]
    # every pre-loaded event settled a decision; the baseline echoed every record
    assert work["records"] == work["expected"] == e2e["expected"]["decisions"] == e2e["events"]
    assert work["stopped_on"] == "count"
    # Records are distinct decision ids; an event decided again (its task's end read before
    # its intent) is counted apart.
    assert sum(work["verdicts"].values()) == work["records"] + work["duplicate_decision_ids"]
    assert base["records"] == base["expected"] == e2e["events"]
    assert base["process"]["records"] == e2e["events"]
    assert work["events_per_second"] > 0 and base["events_per_second"] > 0
    assert e2e["ratio_worker_to_baseline"] > 0
    assert result["placement"]["worker_threads_cpus"] == [
        str(result["placement"]["worker_and_baselines_cpu"])]

    # the Faust floor: one record per pre-loaded event, on the worker's core, with its CPU
    floor = e2e["faust_floor"]
    assert floor["records"] == floor["expected"] == e2e["events"]
    assert floor["stopped_on"] == "count" and floor["records_beyond_expected"] == 0
    assert floor["events_per_second"] > 0
    assert floor["cpu"]["faust_floor"]["cpu_seconds"] >= 0 and floor["cpu_ms_per_event"] >= 0
    assert result["placement"]["faust_floor_threads_cpus"] == \
        result["placement"]["worker_threads_cpus"]
    assert e2e["ratio_worker_to_faust_floor"] > 0 and e2e["ratio_faust_floor_to_baseline"] > 0
    assert e2e["ratio_worker_to_faust_floor"] == pytest.approx(
        work["events_per_second"] / floor["events_per_second"], rel=1e-3)
    assert floor["loop"]["events"] == e2e["events"] and floor["loop"]["batches"] >= 1
    assert "faust_floor_throughput" in result["limits"]

    lat = result["latency"]
    assert lat["rate"] > 0 and lat["timed_actions"] > 0
    for side in ("worker", "baseline"):
        r = lat[side]
        assert r["missing"] == 0
        s = r["decision"]
        assert s["count"] == lat["timed_actions"]
        assert 0 < s["p50"] <= s["p99"] <= s["p99.9"] <= s["max"]
        assert r["rate_achieved"] > 0
    assert lat["worker"]["revoke_commands_missing"] == 0
    assert lat["worker"]["revoke_command"]["count"] >= 0
