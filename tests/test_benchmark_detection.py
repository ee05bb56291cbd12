"""Smoke test of `python -m benchmarks.detection --quick` on the real AgentDojo dataset."""

from pathlib import Path

import orjson
import pytest

from benchmarks import detection

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "agentdojo"
FIGURES = detection.FIGURES + detection.INFORMATIVE


def check(block: dict, where: str) -> None:
    for key in FIGURES:
        for value in (block[key], block["baseline"][key]):
            assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0), \
                (where, key, value)


@pytest.mark.skipif(not (DATASET / "runs").is_dir(), reason="AgentDojo dataset not present")
def test_quick_benchmark(tmp_path, capsys):
    code = detection.main(["--runs-dir", str(DATASET / "runs"),
                           "--tasks", str(DATASET / "tasks.json"),
                           "--out", str(tmp_path), "--quick"])
    assert code == 0
    assert "detection quality" in capsys.readouterr().out
    result = orjson.loads((tmp_path / "detection.json").read_bytes())
    assert result["dataset"]["quick"] and result["dataset"]["runs"] == detection.QUICK_RUNS

    check(result["full"], "full")
    assert result["full"]["timing"]["events_per_second"] > 0
    seeds = result["order_sensitivity"]["seeds"]
    assert sorted(seeds) == [str(s) for s in detection.SEEDS]
    for seed, block in seeds.items():
        check(block, f"seed {seed}")
    for key in detection.FIGURES:
        span = result["order_sensitivity"]["spread_over_seeds"][key]
        assert span["min"] is None or span["min"] <= span["max"]
    assert set(result["per_suite_fresh_engine"]) == set(result["full"]["per_suite"])
    for suite, block in result["per_suite_fresh_engine"].items():
        check(block, f"suite {suite}")
    check(result["rules_only"], "rules")
    assert result["rules_only"]["profile"] == "rules"
    assert result["per_model"]
    for model, block in result["per_model"].items():
        check(block, f"model {model}")
