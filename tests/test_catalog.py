"""The tool catalog: JSON entries, MCP annotations, the conservative default."""

import pytest

from monitor.catalog import Catalog


def test_entries_and_unknown_default():
    cat = Catalog.from_dict({"tools": {
        "read_inbox": {"capabilities": ["read"]},
        "send_email": {"capabilities": ["send"], "targets": ["to"]},
        "fetch": {"capabilities": ["read"], "targets": ["url"], "open_world": True}}})
    assert not cat.get("read_inbox").side_effecting
    assert cat.get("send_email").side_effecting and cat.get("send_email").targets == ("to",)
    assert cat.get("fetch").open_world
    unknown = cat.get("launch_rocket")
    assert unknown.side_effecting and not unknown.known and unknown.capabilities == {"write"}


@pytest.mark.parametrize("annotations,caps,open_world", [
    ({"readOnlyHint": True, "openWorldHint": False}, {"read"}, False),
    ({"readOnlyHint": True}, {"read"}, True),
    ({"destructiveHint": False, "openWorldHint": False}, {"write"}, False),
    ({"openWorldHint": False}, {"write", "delete"}, False),
    ({}, {"write", "delete", "send"}, True),
])
def test_mcp_annotations_map_to_capabilities(annotations, caps, open_world):
    spec = Catalog.from_dict({"tools": {"t": {"annotations": annotations}}}).get("t")
    assert spec.capabilities == caps and spec.open_world is open_world


def test_unknown_capability_is_refused():
    with pytest.raises(ValueError, match="unknown capabilities"):
        Catalog.from_dict({"tools": {"t": {"capabilities": ["teleport"]}}})
