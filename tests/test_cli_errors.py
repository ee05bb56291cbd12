"""The command line's manners: help on every command, progress and a summary, bad inputs
named with their line, documented exit codes."""

import argparse
import io
import subprocess
import sys

import pytest

from streams.cli import EXIT_CODES, build_parser, main
from streams.progress import Progress

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE


def _commands(parser, path=()):
    """Every command path of the parser, leaves and groups ('import', 'import agentdojo')."""
    for action in parser._actions:  # (argparse has no public walk of its subcommands)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from _commands(sub, (*path, name))


COMMANDS = sorted(set(_commands(build_parser())))


def test_the_parser_walk_finds_the_nested_commands():
    assert ("import", "agentdojo") in COMMANDS and ("replay",) in COMMANDS
    assert len(COMMANDS) >= 11


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help(path):
    out = subprocess.run([sys.executable, "-m", "streams.cli", *path, "--help"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: intentwatch " + " ".join(path))


def test_top_level_help_lists_the_exit_codes():
    out = subprocess.run([sys.executable, "-m", "streams.cli", "--help"], check=False,
                         capture_output=True, text=True, timeout=60)
    assert EXIT_CODES in out.stdout and "130" in out.stdout


def test_replay_names_bad_lines_and_shows_progress(tmp_path, capsys):
    trace = tmp_path / "trace.jsonl"
    lines = SAMPLE_TRACE.read_bytes().splitlines()
    lines[2:2] = [b"{not json", b'{"v": 1, "type": "agent.action"}']
    trace.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["replay", str(trace), "-q", "-o", str(tmp_path / "d.jsonl"),
                 "--catalog", str(SAMPLE_CATALOG)]) == 0
    captured = capsys.readouterr()
    assert f"{trace}:3: not_json:" in captured.err
    assert f"{trace}:4: missing_field:" in captured.err
    assert f"replay: {len(lines)}/{len(lines)} lines" in captured.err
    assert "2 dead letters" in captured.out


def test_bad_catalog_is_named_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "catalog.json"
    bad.write_text('{"tools": {"x": {"capabilities": ["fly"]}}}')
    assert main(["replay", str(SAMPLE_TRACE), "-o", str(tmp_path / "d.jsonl"),
                 "--catalog", str(bad)]) == 2
    assert f"{bad}: not a valid catalog: tool 'x': unknown capabilities" in \
        capsys.readouterr().err
    bad.write_text("{\n oops")
    assert main(["replay", str(SAMPLE_TRACE), "-o", str(tmp_path / "d.jsonl"),
                 "--catalog", str(bad)]) == 2
    assert f"{bad}:2: not JSON" in capsys.readouterr().err


def test_import_names_a_bad_tasks_file(tmp_path, capsys):
    tasks = tmp_path / "tasks.json"
    tasks.write_text("[1, 2")
    (tmp_path / "runs").mkdir()
    assert main(["import", "agentdojo", str(tmp_path / "runs"), "--tasks", str(tasks),
                 "-o", str(tmp_path / "out")]) == 2
    assert f"intentwatch: {tasks}: not JSON" in capsys.readouterr().err


def test_missing_input_is_named_with_exit_code_2(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert main(["eval", str(missing), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_eval_names_bad_label_and_event_lines(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    events.write_bytes(SAMPLE_TRACE.read_bytes() + b"[1]\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(b'{"task_id": "t", "kind": "benign"}\nnot json\n{"kind": "benign"}\n')
    assert main(["eval", str(events), str(labels), "--catalog", str(SAMPLE_CATALOG)]) == 0
    err = capsys.readouterr().err
    assert f"{labels}:2: not_json:" in err and f"{labels}:3: no_task_id:" in err
    n = len(SAMPLE_TRACE.read_bytes().splitlines()) + 1
    assert f"{events}:{n}: not_object:" in err


def test_produce_to_an_unreachable_broker_is_exit_code_1(monkeypatch, capsys):
    monkeypatch.setenv("INTENTWATCH_BROKER", "kafka://127.0.0.1:1")
    assert main(["produce", str(SAMPLE_TRACE)]) == 1
    assert "produce to 127.0.0.1:1 failed" in capsys.readouterr().err


@pytest.mark.kafka
def test_produce_names_lines_the_worker_will_dead_letter(kafka, tmp_path, monkeypatch, capsys):
    trace = tmp_path / "trace.jsonl"
    trace.write_bytes(SAMPLE_TRACE.read_bytes() + b"{broken\n")
    monkeypatch.setenv("INTENTWATCH_BROKER", f"kafka://{kafka}")
    for var, name in (("INTENTWATCH_TOPIC_INTENTS", "cli-produce.intents"),
                      ("INTENTWATCH_TOPIC_ACTIONS", "cli-produce.actions")):
        monkeypatch.setenv(var, name)
    assert main(["produce", str(trace)]) == 0
    captured = capsys.readouterr()
    n = len(trace.read_bytes().splitlines())
    assert f"{trace}:{n}: not_json:" in captured.err
    assert f"produce: {n}/{n} records" in captured.err
    assert "1 of them are not valid events" in captured.out


def test_progress_writes_lines_to_a_log_and_rewrites_one_on_a_terminal():
    log = io.StringIO()
    p = Progress("replay", "lines", total=10, stream=log, every=0)
    p(4)
    p(10)
    p.finish()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("  replay: 4/10 lines") and lines[-1].startswith(
        "  replay: 10/10 lines") and len(lines) == 3

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    p = Progress("import", "run files", stream=tty, every=0)
    p(3, 7)
    p.finish()
    assert tty.getvalue().startswith("\r  import: 3/7 run files") and \
        tty.getvalue().endswith("\n") and tty.getvalue().count("\n") == 1

