"""The command line: help everywhere, replay output, configuration errors."""


import orjson
import pytest

from monitor.config import Settings
from streams.cli import main

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE


def test_replay_prints_decisions_and_writes_records(tmp_path, capsys):
    out = tmp_path / "decisions.jsonl"
    assert main(["replay", str(SAMPLE_TRACE), "-o", str(out), "--catalog",
                 str(SAMPLE_CATALOG)]) == 0
    printed = capsys.readouterr().out
    assert "REVOKE ['cred-finance-7', 'cred-hijack-1']" in printed
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(records) == 16 and sum(r["command"] is not None for r in records) == 1


def test_missing_trace_is_exit_code_2(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 2


def test_bad_setting_is_named(monkeypatch, capsys):
    monkeypatch.setenv("INTENTWATCH_PARTITIONS", "many")
    assert main(["schemas", "-o", "unused"]) == 2
    assert "INTENTWATCH_PARTITIONS" in capsys.readouterr().err


def test_settings_validation_names_the_variable(monkeypatch):
    monkeypatch.setenv("INTENTWATCH_ALERT_AT", "0.95")
    monkeypatch.setenv("INTENTWATCH_REVOKE_AT", "0.9")
    with pytest.raises(ValueError, match="INTENTWATCH_ALERT_AT"):
        Settings.from_env()


@pytest.mark.parametrize("name, bad", [("INTENTWATCH_BATCH_MAX", "0"),
                                       ("INTENTWATCH_BATCH_WAIT", "0"),
                                       ("INTENTWATCH_BATCH_WAIT", "soon"),
                                       ("INTENTWATCH_STATE_CACHE", "-1")])
def test_worker_batch_and_cache_settings_are_validated(monkeypatch, name, bad):
    assert (Settings().batch_max, Settings().batch_wait, Settings().state_cache) == (
        500, 0.002, 10_000)
    monkeypatch.setenv(name, bad)
    with pytest.raises(ValueError, match=name):
        Settings.from_env()
