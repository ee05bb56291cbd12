"""MCP `tools/list` result -> tool catalog entries (monitor.catalog). Pure: no I/O.

Input: the result object `{"tools": [...]}` or the whole JSON-RPC response
`{"jsonrpc": "2.0", "id": ..., "result": {"tools": [...]}}`. Each tool keeps its MCP
annotations (readOnlyHint, destructiveHint, idempotentHint, openWorldHint), which the catalog
turns into capabilities with MCP's cautious defaults (`catalog.from_mcp_annotations`): a tool
without annotations is taken as destructive and open-world.

`targets` (the arguments that say what a call acts on) come from the input schema, in a
general way: a top-level property whose JSON Schema `format` names an address or a place
(TARGET_FORMATS), or an array of such. Names and descriptions are not read: a schema that
gives no format declares no target, and docs/ingestion.md says how to add them by hand.
"""

from __future__ import annotations

ANNOTATION_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
# JSON Schema formats (2020-12 validation vocabulary, section 7.3) that name where data goes
# or comes from: an address, a host, a resource.
TARGET_FORMATS = frozenset({"email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6",
                            "uri", "uri-reference", "iri", "iri-reference", "uri-template"})


def tools_of(document) -> list[dict]:
    """The tools list of a tools/list result or JSON-RPC response; TypeError if neither."""
    if isinstance(document, dict) and document.get("jsonrpc") == "2.0":
        if "error" in document:
            raise ValueError(f"the JSON-RPC response is an error: {document['error']}")
        document = document.get("result")
    if not isinstance(document, dict) or not isinstance(document.get("tools"), list):
        raise TypeError("expected an MCP tools/list result {\"tools\": [...]} or a JSON-RPC "
                         "response whose result is one")
    return document["tools"]


def targets_of(schema) -> list[str]:
    """Top-level properties of an input schema whose format (or items' format) names a
    target."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    out = []
    for name, prop in (props.items() if isinstance(props, dict) else ()):
        if not isinstance(prop, dict):
            continue
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        if prop.get("format") in TARGET_FORMATS or items.get("format") in TARGET_FORMATS:
            out.append(name)
    return out


def catalog_entries(document, prefix: str = "") -> dict[str, dict]:
    """tool name (prefix + MCP name) -> catalog entry {annotations, targets, description}.
    Bad input: ValueError or TypeError naming the tool."""
    entries: dict[str, dict] = {}
    for i, tool in enumerate(tools_of(document)):
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"tool #{i}: no name")
        annotations = tool.get("annotations") or {}
        schema = tool.get("inputSchema")
        if not isinstance(annotations, dict):
            raise TypeError(f"tool {name!r}: annotations must be an object")
        if schema is not None and not isinstance(schema, dict):
            raise TypeError(f"tool {name!r}: inputSchema must be an object")
        bad = [h for h in ANNOTATION_HINTS if h in annotations
               and not isinstance(annotations[h], bool)]
        if bad:
            raise ValueError(f"tool {name!r}: {bad} must be true or false")
        full = prefix + name
        if full in entries:
            raise ValueError(f"tool {full!r} is listed twice")
        entry = {"annotations": {h: annotations[h] for h in ANNOTATION_HINTS
                                 if h in annotations},
                 "targets": targets_of(schema)}
        if isinstance(tool.get("description"), str):
            entry["description"] = tool["description"]
        entries[full] = entry
    return entries


def merged(catalog: dict | None, entries: dict[str, dict]) -> tuple[dict, list[str]]:
    """A catalog document with the entries added; entries replace tools of the same name.
    Returns (catalog, replaced names)."""
    catalog = dict(catalog or {})
    tools = dict(catalog.get("tools") or {})
    replaced = sorted(n for n in entries if n in tools)
    tools.update(entries)
    catalog["tools"] = tools
    return catalog, replaced
