"""Smoke test of `python -m benchmarks.growth --quick` on the real AgentDojo dataset (tiny
sizes): the structure and sanity of its figures, no timing thresholds."""

from pathlib import Path

import orjson
import pytest

from benchmarks import growth

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "agentdojo"


def test_template_repeats_actions_with_fresh_ids_and_later_times():
    run = [{"v": 1, "type": "task.intent", "task_id": "ad-x", "agent_id": "a", "goal": "g",
            "tools": ["t"], "credentials": ["cred-x"], "event_time": 10.0},
           {"v": 1, "type": "agent.action", "event_id": "ad-x#e1", "task_id": "ad-x",
            "agent_id": "a", "event_time": 11.0, "tool": "t", "args": {},
            "credential_id": "cred-x", "call_id": "c0", "phase": "requested"},
           {"v": 1, "type": "agent.action", "event_id": "ad-x#e2", "task_id": "ad-x",
            "agent_id": "a", "event_time": 12.0, "tool": "t", "args": {},
            "credential_id": "cred-x", "call_id": "c0", "phase": "completed", "status": "ok",
            "result": "r"},
           {"v": 1, "type": "task.end", "task_id": "ad-x", "event_time": 13.0}]
    fed = list(growth.feed_events([run], 3, 6))
    assert [r for r, _ in fed] == [r for r in range(6) for _ in range(3)]
    by_task: dict[str, list[dict]] = {}
    for _, e in fed:
        by_task.setdefault(e["task_id"], []).append(e)
    assert len(by_task) == 3
    for events in by_task.values():
        assert [e["type"] for e in events] == ["task.intent"] + ["agent.action"] * 5
        assert "task.end" not in {e["type"] for e in events}
        times = [e["event_time"] for e in events]
        assert times == sorted(times) and len(set(times)) == 6
        ids = [e["event_id"] for e in events[1:]]
        assert len(set(ids)) == 5 and all("ad-x" not in i for i in ids)
        # requests and completions still pair within each repetition
        calls = [e["call_id"] for e in events[1:]]
        assert calls[0] == calls[1] and calls[2] == calls[3] and calls[0] != calls[2]


@pytest.mark.skipif(not (DATASET / "runs").is_dir(), reason="AgentDojo dataset not present")
def test_quick_growth(tmp_path, capsys):
    out_json = tmp_path / "growth.json"
    assert growth.main(["--quick", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "us/event" in out and "state B/task" in out
    result = orjson.loads(out_json.read_bytes())
    assert result["quick"] is True and result["profile"] == "full"
    grid = {(c["tasks"], c["per_task"]) for c in result["cells"]}
    skipped = {(s["tasks"], s["per_task"]) for s in result["skipped"]}
    assert grid | skipped == {(n, k) for n in growth.QUICK["tasks"]
                              for k in growth.QUICK["per_task"]}
    assert grid and not grid & skipped
    for c in result["cells"]:
        n, k = c["tasks"], c["per_task"]
        assert c["events"] == n * k
        assert c["dead_letters"] == 0
        assert c["tasks_in_store"] == n  # all active at once, none ended, none freed
        assert c["decisions"] >= c["events"] * 0.9
        assert c["us_per_event"] > 0 and c["events_per_second"] > 0
        assert len(c["us_per_event_by_round"]) == k
        assert all(v is not None and v > 0 for v in c["us_per_event_by_round"])
        s = c["state_bytes"]
        assert s["n"] == n and 0 < s["p50"] <= s["p99"] <= s["max"]
        assert c["registry_entry_bytes"]["n"] == n
        assert c["rss_after"] > 0 and c["rss_before"] > 0
    # A longer history is a bigger (bounded) state, for the same tasks.
    small = {c["tasks"]: c for c in result["cells"] if c["per_task"] == 4}
    big = {c["tasks"]: c for c in result["cells"] if c["per_task"] == 16}
    for n in small.keys() & big.keys():
        assert big[n]["state_bytes"]["mean"] > small[n]["state_bytes"]["mean"]
