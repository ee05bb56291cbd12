"""Smoke test of `intentwatch bench --quick` on the real AgentDojo dataset (tiny sizes)."""

from pathlib import Path

import orjson
import pytest

from benchmarks import bench, inprocess, scale
from streams import cli

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "agentdojo"


@pytest.mark.skipif(not (DATASET / "runs").is_dir(), reason="AgentDojo dataset not present")
def test_quick_bench(tmp_path, capsys):
    # broker and growth have smoke tests of their own (test_bench_broker_smoke, ..._growth_...)
    code = cli.main(["bench", "--quick", "--out", str(tmp_path), "--only", "inprocess,memory"])
    assert code == 0
    out = capsys.readouterr().out
    assert "in-process throughput" in out and "bytes per task" in out
    result = orjson.loads((tmp_path / "bench.json").read_bytes())

    assert result["scaled_trace"]["events"] == bench.QUICK["events"]
    ip = result["inprocess"]
    assert ip["events"] == bench.QUICK["events"]
    for name in inprocess.PASSES:
        assert ip[name]["events_per_second"] > 0
        assert ip[name]["dead_letters"] == {}
    assert ip["full"]["decisions"] >= ip["events"] - 1  # every event settles a decision here

    run = result["memory"]["runs"][str(bench.QUICK["tasks"])]
    assert run["active"]["tasks"] == bench.QUICK["tasks"]
    s = run["active"]["state_bytes"]
    assert 0 < s["p50"] <= s["p99"] <= s["max"]
    assert run["active"]["rss_after"] > 0
    # Ended tasks are freed once event time passes their retention: reported as measured.
    assert run["ended"]["freed"] == (run["ended"]["states_still_in_store"] == 0)
    # The same feed through the worker's store holds the same states, as bytes.
    worker = result["memory"]["worker_store"][str(bench.QUICK["tasks"])]
    assert worker["store"] == "worker" and worker["active"]["tasks"] == bench.QUICK["tasks"]
    assert worker["active"]["state_bytes"]["mean"] == s["mean"]


def test_bench_refuses_an_unknown_part(tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--out", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown part" in capsys.readouterr().err


def test_scaled_trace_is_deterministic_and_distinct(tmp_path):
    run = [{"v": 1, "type": "task.intent", "task_id": "ad-x", "agent_id": "a", "goal": "g",
            "tools": ["t"], "credentials": ["cred-x"], "event_time": 10.0},
           {"v": 1, "type": "agent.action", "event_id": "ad-x#e1", "task_id": "ad-x",
            "agent_id": "a", "event_time": 11.0, "tool": "t", "args": {},
            "credential_id": "cred-x", "call_id": "ad-x#c0", "phase": "requested"},
           {"v": 1, "type": "task.end", "task_id": "ad-x", "event_time": 12.0,
            "event_id": "ad-x#end"}]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    scale.write_scaled(a, [run], 60, active=4, progress=False)
    scale.write_scaled(b, [run], 60, active=4, progress=False)
    assert a.read_bytes() == b.read_bytes()
    events = [orjson.loads(line) for line in a.read_bytes().splitlines()]
    assert len(events) == 60
    assert len({e["task_id"] for e in events}) == 20
    assert len({e["event_id"] for e in events if "event_id" in e}) == 40
    assert all("ad-x" not in orjson.dumps(e).decode() for e in events)
    times = [e["event_time"] for e in events]
    assert times == sorted(times)
    # round-robin: the first four events are four different tasks' intents
    assert [e["type"] for e in events[:4]] == ["task.intent"] * 4
    for e in events:
        if e["type"] == "agent.action":
            intent = next(x for x in events if x["task_id"] == e["task_id"]
                          and x["type"] == "task.intent")
            assert e["credential_id"] == intent["credentials"][0]
