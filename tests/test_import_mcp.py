"""MCP tools/list -> tool catalog (monitor/importers/mcp.py, `intentwatch import mcp`): the
entries keep the annotations, targets come from the input schema, the result loads."""

from __future__ import annotations

import orjson
import pytest

from monitor.catalog import Catalog
from monitor.importers.mcp import catalog_entries, targets_of
from streams.cli import main

from .conftest import SAMPLE_CATALOG

# A tools/list result as an MCP server answers it (2025-06-18 schema: name, title,
# description, inputSchema, annotations).
TOOLS = {"tools": [
    {"name": "read_file", "title": "Read a file", "description": "Read a file's contents",
     "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}},
                     "required": ["path"]},
     "annotations": {"readOnlyHint": True, "openWorldHint": False}},
    {"name": "send_message", "description": "Send a message",
     "inputSchema": {"type": "object", "properties": {
         "to": {"type": "array", "items": {"type": "string", "format": "email"}},
         "body": {"type": "string"}}},
     "annotations": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False,
                     "openWorldHint": True, "title": "Send"}},
    {"name": "fetch", "inputSchema": {"type": "object", "properties": {
        "url": {"type": "string", "format": "uri"}, "max_length": {"type": "integer"}}},
     "annotations": {"readOnlyHint": True}},
    {"name": "delete_repo", "inputSchema": {"type": "object", "properties": {
        "repo": {"type": "string"}}}},   # no annotations: MCP's cautious defaults
]}


def test_entries_keep_annotations_and_load_with_the_right_capabilities():
    entries = catalog_entries(TOOLS)
    assert entries["send_message"]["annotations"] == {
        "readOnlyHint": False, "destructiveHint": False, "idempotentHint": False,
        "openWorldHint": True}   # the four hints, not the display title
    catalog = Catalog.from_dict({"tools": entries})
    read, send, fetch, delete = (catalog.get(n) for n in
                                 ("read_file", "send_message", "fetch", "delete_repo"))
    assert read.capabilities == {"read"} and not read.open_world and not read.side_effecting
    assert send.capabilities == {"write", "send"} and send.targets == ("to",)
    assert fetch.capabilities == {"read"} and fetch.open_world and fetch.watched
    assert fetch.targets == ("url",)
    assert delete.capabilities == {"write", "delete", "send"} and delete.open_world
    assert all(spec.known for spec in (read, send, fetch, delete))


def test_targets_are_properties_whose_format_names_an_address():
    schema = {"type": "object", "properties": {
        "host": {"type": "string", "format": "hostname"},
        "cc": {"type": "array", "items": {"format": "idn-email"}},
        "when": {"type": "string", "format": "date-time"},
        "name": {"type": "string"}}}
    assert targets_of(schema) == ["host", "cc"]
    assert targets_of(None) == [] and targets_of({"properties": "odd"}) == []


def test_json_rpc_response_and_prefix():
    response = {"jsonrpc": "2.0", "id": 1, "result": TOOLS}
    assert sorted(catalog_entries(response, prefix="mcp__files__")) == [
        "mcp__files__delete_repo", "mcp__files__fetch", "mcp__files__read_file",
        "mcp__files__send_message"]


@pytest.mark.parametrize("document, words", [
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no such method"}},
     "is an error"),
    ({"result": []}, "tools/list result"),
    ({"tools": [{"description": "nameless"}]}, "tool #0: no name"),
    ({"tools": [{"name": "t", "annotations": ["readOnlyHint"]}]}, "'t': annotations"),
    ({"tools": [{"name": "t", "annotations": {"readOnlyHint": "yes"}}]}, "true or false"),
    ({"tools": [{"name": "t"}, {"name": "t"}]}, "listed twice"),
])
def test_bad_input_is_named(document, words):
    with pytest.raises((ValueError, TypeError), match=words):
        catalog_entries(document)


def test_import_mcp_merges_into_a_catalog(tmp_path, capsys):
    tools = tmp_path / "tools.json"
    tools.write_bytes(orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": TOOLS}))
    out = tmp_path / "catalog.json"
    assert main(["import", "mcp", str(tools), "-o", str(out), "--merge", str(SAMPLE_CATALOG),
                 "--prefix", "files."]) == 0
    assert "wrote 4 MCP tools" in capsys.readouterr().out
    catalog = Catalog.load(out)
    assert catalog.get("send_money").capabilities == {"money"}   # the merged catalog's own
    assert catalog.get("files.fetch").targets == ("url",)
    assert catalog.get("files.read_file").capabilities == {"read"}


def test_import_mcp_bad_input_is_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "tools.json"
    bad.write_bytes(b'{"tools": [{"name": 3}]}')
    assert main(["import", "mcp", str(bad), "-o", str(tmp_path / "c.json")]) == 2
    assert "tools.json: tool #0: no name" in capsys.readouterr().err
    bad.write_bytes(b"{nope")
    assert main(["import", "mcp", str(bad), "-o", str(tmp_path / "c.json")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["import", "mcp", str(tmp_path / "missing.json"), "-o", "x.json"]) == 2
    assert not (tmp_path / "c.json").exists()
