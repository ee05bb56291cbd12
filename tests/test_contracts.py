"""Event contracts: decoding, validation, and the published JSON Schemas."""

import json
from pathlib import Path

import orjson
import pytest

from monitor.contracts import SPECS, ContractError, decode, json_schema, validate

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"

ACTION = {"v": 1, "type": "agent.action", "event_id": "e1", "task_id": "t1", "agent_id": "a1",
          "event_time": 10.0, "tool": "read_file", "args": {"path": "/tmp/x"},
          "phase": "requested"}


def raw(obj) -> bytes:
    return orjson.dumps(obj)


def code_of(data: bytes, **kw) -> str:
    with pytest.raises(ContractError) as info:
        decode(data, **kw)
    return info.value.code


def test_valid_action_decodes_to_the_same_dict():
    assert decode(raw(ACTION)) == ACTION


def test_sample_trace_is_valid():
    path = Path(__file__).resolve().parents[1] / "monitor" / "data" / "sample_trace.jsonl"
    events = [decode(line) for line in path.read_bytes().splitlines()]
    assert {e["type"] for e in events} == {"task.intent", "agent.action", "task.end"}


@pytest.mark.parametrize("data,code", [
    (b"{nope", "not_json"),
    (b"\xff\xfe", "not_json"),
    (b"42", "not_object"),
    (raw({"v": 1, "type": "nope"}), "unknown_type"),
    (raw({**ACTION, "v": 2}), "unsupported_version"),
    (raw({k: v for k, v in ACTION.items() if k != "tool"}), "missing_field"),
    (raw({**ACTION, "args": ["not", "an", "object"]}), "wrong_type"),
    (raw({**ACTION, "event_time": "yesterday"}), "wrong_type"),
    (raw({**ACTION, "event_time": True}), "wrong_type"),
    (raw({**ACTION, "phase": "maybe"}), "invalid_value"),
])
def test_bad_events_are_rejected_with_a_reason(data, code):
    assert code_of(data) == code


def test_oversize_is_rejected_before_parsing():
    assert code_of(b"{" + b" " * 2000 + b"}", max_bytes=1024) == "oversize"


def test_intent_scopes_must_map_to_pattern_lists():
    intent = {"v": 1, "type": "task.intent", "task_id": "t", "agent_id": "a",
              "workload_id": "spiffe://x/a", "goal": "g", "tools": ["x"], "event_time": 1,
              "scopes": {"to": "*@x"}}
    with pytest.raises(ContractError) as info:
        validate(intent)
    assert info.value.code == "wrong_type"
    intent["scopes"] = {"to": ["*@x"]}
    assert validate(intent) is intent


@pytest.mark.parametrize("etype", sorted(SPECS))
def test_published_schema_matches_the_enforced_contract(etype):
    published = json.loads((SCHEMAS / f"{etype}.schema.json").read_text())
    assert published == json_schema(etype), "run `intentwatch schemas` to regenerate"
