"""`intentwatch import otel` and `intentwatch import mcp`: files of agent frameworks in,
intentwatch events or catalog entries out (the mappings are monitor/importers/otel.py and
mcp.py; docs/ingestion.md describes them)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import orjson

from monitor.catalog import Catalog
from monitor.errors import InputError
from monitor.importers import mcp, otel

MAX_ERRORS_SHOWN = 20


def otlp_records(path: Path):
    """(line number, raw) of each OTLP request in a file: one whole JSON document (line 1), or
    one request per line as the Collector's file exporter writes them. Blank lines skipped."""
    data = path.read_bytes()
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        yield 1, data
        return
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield n, line


def cmd_import_otel(args, settings) -> int:
    paths = [Path(p) for p in args.files]
    for path in paths:   # before writing anything: a missing file is bad usage (exit 2)
        if not path.is_file():
            raise InputError(path, "no such file")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    spans = events = 0
    skipped, errors = Counter(), Counter()
    shown = 0
    with open(out, "wb") as fh:
        for path in paths:
            records = 0
            for line, raw in otlp_records(path):
                records += 1
                mapped = otel.map_record(raw)
                spans += mapped.spans
                events += len(mapped.events)
                skipped.update(mapped.skipped)
                fh.write(b"".join(orjson.dumps(e) + b"\n" for e in mapped.events))
                for err in mapped.errors:
                    errors[err.code] += 1
                    if shown < MAX_ERRORS_SHOWN:
                        print(f"{path}:{line}: {err}", file=sys.stderr)
                    shown += 1
            print(f"  {path}: {records} records", file=sys.stderr, flush=True)
    if shown > MAX_ERRORS_SHOWN:
        print(f"  ... and {shown - MAX_ERRORS_SHOWN} more errors", file=sys.stderr)
    print(f"read {spans} spans from {len(paths)} files; wrote {events} events to {out}; "
          f"skipped {dict(skipped)}; errors {dict(errors)}")
    return 0


def cmd_import_mcp(args, settings) -> int:
    try:
        document = orjson.loads(Path(args.tools).read_bytes())
    except orjson.JSONDecodeError as exc:
        print(f"intentwatch: {args.tools}: not JSON: {exc}", file=sys.stderr)
        return 2
    base = None
    if args.merge:
        try:
            base = orjson.loads(Path(args.merge).read_bytes())
            Catalog.from_dict(base)   # refuse to merge into a catalog that does not load
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            print(f"intentwatch: {args.merge}: not a tool catalog: {exc}", file=sys.stderr)
            return 2
    try:
        entries = mcp.catalog_entries(document, args.prefix)
        catalog, replaced = mcp.merged(base, entries)
        loaded = Catalog.from_dict(catalog)
    except (ValueError, TypeError) as exc:
        print(f"intentwatch: {args.tools}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(catalog, option=orjson.OPT_INDENT_2) + b"\n")
    for name in entries:
        spec = loaded.get(name)
        print(f"  {name}: {sorted(spec.capabilities)}"
              f"{' open-world' if spec.open_world else ''}"
              f"{' targets ' + ','.join(spec.targets) if spec.targets else ''}", file=sys.stderr)
    print(f"wrote {len(entries)} MCP tools to {out}"
          + (f" ({len(catalog['tools'])} tools with {args.merge}; replaced {replaced})"
             if args.merge else ""))
    return 0


def add_import_parsers(isub) -> None:
    """The `import otel` and `import mcp` subcommands, under `intentwatch import`."""
    p = isub.add_parser("otel", help="OTLP JSON traces (GenAI spans) -> events.jsonl")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="OTLP JSON: one ExportTraceServiceRequest per line, or one document")
    p.add_argument("-o", "--output", required=True, help="events file (JSON lines)")
    p.set_defaults(func=cmd_import_otel)

    p = isub.add_parser("mcp", help="MCP tools/list result -> tool catalog JSON")
    p.add_argument("tools", metavar="TOOLS.json",
                   help="a tools/list result {\"tools\": [...]} or its JSON-RPC response")
    p.add_argument("-o", "--output", required=True, help="catalog JSON to write")
    p.add_argument("--merge", metavar="CATALOG",
                   help="add the tools to this catalog (same names are replaced)")
    p.add_argument("--prefix", default="", metavar="PREFIX",
                   help="put before each tool name, as the agent names the server's tools "
                        "(e.g. mcp__github__)")
    p.set_defaults(func=cmd_import_mcp)
