"""Smoke test of the soak (`python -m benchmarks.soak`) on the session's broker, small N:
every hostile record reaches the dead letters with its reason, every good event is decided."""

from __future__ import annotations

from benchmarks import soak


def test_soak_counts_what_went_where(kafka):
    result = soak.soak(kafka, events=400, hostile=0.1, source="sample", active=20,
                       idle_seconds=30)
    sent, out = result["input"], result["output"]
    assert sent["hostile_records"] > 10 and sent["good_events"] > 300
    assert out["good_events_without_decision"] == 0
    assert out["hostile_not_dead_lettered_with_their_reason"] == 0
    assert out["unexpected"] == {}
    assert out["dead_letters_by_reason"] == sent["hostile_expected_by_reason"]
    assert out["dead_letters_metric"] == {r: float(n) for r, n in
                                          sent["hostile_expected_by_reason"].items()}
    # One decision per good event, plus those decided again (an end read before its intent).
    assert sum(out["decisions_by_verdict"].values()) == sent["good_events"] + out["decided_again"]
    assert out["worker_alive_at_end"] and out["crashed_agents_in_log"] == 0
    assert out["healthz_at_end"]["status"] == "ok"
    assert result["ok"]
