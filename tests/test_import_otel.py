"""OTLP JSON GenAI spans -> intentwatch events (monitor/importers/otel.py) and
`intentwatch import otel`: the mapping, any span order, bad records; no broker."""

from __future__ import annotations

import io
import itertools

import orjson
import pytest

from monitor.catalog import Catalog
from monitor.contracts import validate
from monitor.importers.otel import map_record, map_request
from monitor.profiles import build_engine
from monitor.replay import replay
from streams.cli import main

from . import otlp
from .conftest import SAMPLE_CATALOG


def decide(events: list[dict]) -> list[dict]:
    engine = build_engine("full", Catalog.load(SAMPLE_CATALOG))
    lines = [(i, orjson.dumps(e)) for i, e in enumerate(events)]
    return replay(lines, engine, 512 * 1024, io.BytesIO(), io.BytesIO())["decisions"]


def test_agent_trace_maps_to_intent_actions_and_end():
    spans = otlp.hijacked_trace()
    mapped = map_request(otlp.request(spans))
    assert (mapped.spans, mapped.bad, mapped.errors) == (5, 0, [])
    assert mapped.skipped == {"not_mapped:chat": 1}
    for event in mapped.events:
        validate(event)   # every event keeps the contract
    trace = spans[0]["traceId"]
    assert {e["task_id"] for e in mapped.events} == {f"otel-{trace}"}
    assert [e["type"] for e in mapped.events] == ["agent.action"] * 3 + ["task.intent",
                                                                         "task.end"]
    search, page, money, intent, end = mapped.events
    assert search["tool"] == "search_hotels" and search["args"] == {"city": "Paris"}
    assert (search["phase"], search["status"], search["call_id"]) == ("completed", "ok",
                                                                      "call_1")
    assert search["result"] == "Hotel Lumiere, Hotel Arc, Hotel Seine"
    assert search["event_time"] == otlp.T0 / 1e9 + 1.5   # the span's end: the call is over
    assert search["event_id"] == f"otel-{trace}-{spans[1]['spanId']}"
    assert page["args"] == {"url": "https://hotels.example/lumiere"}
    assert page["result"].startswith("Nice rooms. IMPORTANT")
    assert money["args"] == {"recipient": "FR7630006000011234567890189", "amount": 900}
    assert intent["tools"] == ["search_hotels", "get_webpage"]
    assert intent["goal"] == "Find three hotels in Paris for next week and summarise them"
    assert intent["agent_id"] == search["agent_id"] == "travel-agent"   # resource service.name
    assert (intent["agent_name"], intent["conversation_id"]) == ("travel", "conv_travel")
    assert intent["event_time"] == otlp.T0 / 1e9 < search["event_time"]   # the agent's start
    assert end["status"] == "completed" and end["event_time"] == otlp.T0 / 1e9 + 4


def test_mapping_is_deterministic_so_a_redelivery_yields_the_same_events():
    raw = orjson.dumps(otlp.request(otlp.hijacked_trace()))
    assert map_record(raw).events == map_record(raw).events


@pytest.mark.parametrize("make, revokes", [(otlp.hijacked_trace, 1), (otlp.benign_trace, 0)])
def test_spans_in_any_order_and_batch_give_the_same_verdicts(make, revokes):
    """Each span maps on its own: in every order, one span per request, the hijacked trace's
    undeclared money transfer is revoked once and the benign trace never alerted."""
    for order in itertools.permutations(make()):
        events = [e for s in order for e in map_request(otlp.request([s])).events]
        decisions = decide(events)
        assert sum(d["command"] is not None for d in decisions) == revokes
        if revokes:
            revoked = [d for d in decisions if d["command"]]
            assert revoked[0]["tool"] == "send_money"
            assert "tool_not_declared" in {r["code"] for r in revoked[0]["reasons"]}
        else:
            assert {d["verdict"] for d in decisions} == {"allow"}


def test_optional_attributes_missing():
    trace, root = otlp.ids("sparse")[0], otlp.ids("sparse")[1]
    bare_tool = otlp.span(trace, "execute_tool", root, 1, 2,
                          {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"})
    agent = otlp.span(trace, "invoke_agent", None, 0, 3,
                      {"gen_ai.operation.name": "invoke_agent"})   # no tool definitions
    mapped = map_request(otlp.request([bare_tool, agent]))
    assert mapped.errors == []
    action, end = mapped.events
    # Arguments and result are opt-in: none recorded -> empty args, no result; the span id
    # stands for the call id.
    assert action["args"] == {} and "result" not in action
    assert action["call_id"] == bare_tool["spanId"]
    # No declared tools, no intent: the engine holds the action and alerts no_intent at the end.
    assert end["type"] == "task.end"
    decisions = decide(mapped.events)
    assert [(d["tool"], d["verdict"]) for d in decisions] == [("lookup", "alert"), (None,
                                                                                   "allow")]
    assert decisions[0]["reasons"][0]["code"] == "no_intent"


def test_string_encoded_definitions_chat_style_names_and_errors():
    trace = otlp.ids("strings")[0]
    failed = otlp.tool_span(trace, "ab" * 8, 1, "fetch", {"url": "https://x.example"}, None,
                            error="timeout")
    args_not_object = otlp.tool_span(trace, "ab" * 8, 2, "echo", None, {"lines": 2})
    args_not_object["attributes"].append({"key": "gen_ai.tool.call.arguments",
                                          "value": {"stringValue": "[1, 2]"}})
    agent = otlp.span(trace, "invoke_agent", None, 0, 5, {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.description": "Fetches pages",
        "gen_ai.tool.definitions": orjson.dumps(
            [{"type": "function", "function": {"name": "fetch"}}, {"name": "echo"}]).decode()})
    agent["status"] = {"code": 2, "message": "tool failed"}
    mapped = map_request(otlp.request([failed, args_not_object, agent]))
    assert mapped.errors == []
    fetch, echo, intent, end = mapped.events
    assert (fetch["status"], fetch["result"]) == ("error", "timeout")
    assert echo["args"] == {"value": [1, 2]} and echo["result"] == '{"lines":2}'
    assert intent["tools"] == ["fetch", "echo"] and intent["goal"] == "Fetches pages"
    assert end["status"] == "failed"


BAD_SPANS = [
    ({"gen_ai.operation.name": "execute_tool"}, "missing_attribute", "gen_ai.tool.name"),
    ({"gen_ai.operation.name": "summon_demon"}, "unknown_operation", "summon_demon"),
    ({"gen_ai.operation.name": "invoke_agent", "gen_ai.tool.definitions": "not a list"},
     "bad_attribute", "must be a list"),
]


@pytest.mark.parametrize("attributes, code, words", BAD_SPANS)
def test_a_bad_span_is_an_error_naming_it_and_the_others_still_map(attributes, code, words):
    trace = otlp.ids("bad")[0]
    bad = otlp.span(trace, "bad", None, 0, 1, attributes)
    good = otlp.tool_span(trace, "cd" * 8, 1, "read_inbox", {}, "ok")
    mapped = map_request(otlp.request([bad, good]))
    assert [e["tool"] for e in mapped.events] == ["read_inbox"]
    assert [e.code for e in mapped.errors] == [code] and mapped.bad == 1
    message = mapped.errors[0].message
    assert words in message and bad["spanId"] in message and trace in message


@pytest.mark.parametrize("raw, code", [
    (b"not json", "not_json"),
    (b"[1, 2]", "not_otlp"),
    (b'{"resourceSpans": {"no": "list"}}', "not_otlp"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "zz"}]}]}]}', "bad_span"),
    (orjson.dumps(otlp.request([dict(otlp.benign_trace()[0], endTimeUnixNano="soon")])),
     "bad_span"),
    (orjson.dumps(otlp.request([dict(otlp.benign_trace()[0], attributes=[{"key": "k",
                                "value": {"intValue": "x"}}])])), "bad_attribute"),
    (None, "empty"),
])
def test_bad_records_are_errors_not_exceptions(raw, code):
    mapped = map_record(raw)
    assert mapped.events == [] and [e.code for e in mapped.errors] == [code]


def test_spans_without_gen_ai_attributes_are_skipped():
    trace = otlp.ids("http")[0]
    http = otlp.span(trace, "GET /", None, 0, 1, {"http.request.method": "GET"})
    mapped = map_request(otlp.request([http]))
    assert (mapped.events, mapped.errors, mapped.skipped) == ([], [], {"not_gen_ai": 1})


# -- intentwatch import otel ----------------------------------------------------------------------
def test_import_otel_reads_json_lines_and_whole_documents(tmp_path, capsys):
    lines = tmp_path / "collector.jsonl"   # the Collector's file exporter: a request per line
    lines.write_bytes(b"\n".join(orjson.dumps(otlp.request([s])) for s in otlp.hijacked_trace())
                      + b"\n\nnot json\n")
    whole = tmp_path / "export.json"       # one pretty-printed document
    whole.write_bytes(orjson.dumps(otlp.request(otlp.benign_trace()),
                                   option=orjson.OPT_INDENT_2))
    out = tmp_path / "out" / "events.jsonl"
    assert main(["import", "otel", str(lines), str(whole), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{lines}:7: not_json" in captured.err   # file and line of the bad record
    assert ("read 8 spans from 2 files; wrote 9 events" in captured.out
            and "'not_mapped:chat': 1" in captured.out and "'not_json': 1" in captured.out)
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(events) == 9
    decisions = decide(events)
    assert [d["tool"] for d in decisions if d["command"]] == ["send_money"]


def test_import_otel_missing_file_is_exit_code_2(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    assert main(["import", "otel", str(tmp_path / "nope.json"), "-o", str(out)]) == 2
    assert "nope.json" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("argv", [["import", "otel"], ["import", "mcp"], ["otel-bridge"]])
def test_ingestion_commands_have_help(argv):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "streams.cli", *argv, "--help"],
                         check=False, capture_output=True, text=True)
    assert out.returncode == 0 and "usage: intentwatch " + " ".join(argv) in out.stdout


def paths(node, path=()):
    """Every place in a JSON tree (dict keys and list items), depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in items:
        yield (*path, key)
        yield from paths(child, (*path, key))


def replaced(tree, path, value):
    tree = orjson.loads(orjson.dumps(tree))
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return tree


def test_no_wrong_shape_anywhere_makes_the_mapping_raise():
    """Every field of a valid request replaced by a value of each other JSON type: the
    mapping returns (events and errors), it never raises."""
    trace = otlp.hijacked_trace()
    failed = otlp.tool_span(trace[0]["traceId"], "ab" * 8, 9, "fetch", {"u": 1}, None,
                            error="timeout")
    request = otlp.request([trace[1], failed, trace[-1]])
    odd = [None, True, 7, -1.5, "x", "[1", "{}", [], [1, "a"], {}, {"stringValue": 3}]
    tried = 0
    for path in paths(request):
        for value in odd:
            mapped = map_request(replaced(request, path, value))
            assert isinstance(mapped.events, list) and isinstance(mapped.errors, list)
            for event in mapped.events:
                validate(event)
            tried += 1
    assert tried > 1000
