"""OpenTelemetry GenAI spans (OTLP JSON) -> intentwatch events. Pure: no Kafka, no files.

Input: an OTLP ExportTraceServiceRequest in its JSON encoding ({"resourceSpans": [{"resource",
"scopeSpans": [{"scope", "spans": [...]}]}]}), as the Collector's file exporter writes one per
line and its Kafka exporter (encoding otlp_json) one per record. Spans follow the GenAI semantic
conventions; docs/ingestion.md gives the mapping and the sources it relies on. In short:

  execute_tool span -> one agent.action, phase completed (the span is exported when the call
                       is over: requested and completed at once would be two decisions of one
                       fact; a completion with no request seen is scored like a request)
  invoke_agent span -> task.intent (only when it declares gen_ai.tool.definitions), task.end
  other GenAI spans -> nothing (chat, embeddings...: not actions); non-GenAI spans -> nothing

The task is the trace: task id "otel-<traceId>", which every span carries, so each span maps on
its own, in any order and across batches (an agent span ends after its tool spans: the engine
holds actions until their intent comes). Event ids derive from trace and span ids, so mapping a
span twice yields the same events. A span that cannot be mapped becomes a ContractError naming
the span; nothing raises out of `map_request` or `map_record`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

from monitor.contracts import ContractError

# Operation names of the GenAI conventions that are not actions or tasks: read, not mapped.
NOT_MAPPED = frozenset({
    "chat", "text_completion", "generate_content", "embeddings", "retrieval", "create_agent",
    "create_memory_store", "search_memory", "update_memory", "delete_memory",
    "delete_memory_store"})
MAX_RESULT_CHARS = 100_000   # keeps an event well under the bus's size limit (512 KiB)
STATUS_ERROR = 2             # OTLP Status.code: 0 unset, 1 ok, 2 error


@dataclass
class Mapped:
    """What one OTLP request (or record) became."""
    events: list[dict] = field(default_factory=list)
    spans: int = 0
    bad: int = 0                                            # spans that are errors
    skipped: Counter = field(default_factory=Counter)      # reason -> spans not mapped
    errors: list[ContractError] = field(default_factory=list)


def any_value(value):
    """An OTLP AnyValue ({"stringValue": ...} etc.) as a plain value. intValue is a string in
    OTLP JSON (64-bit); bytesValue stays base64 text."""
    if not isinstance(value, dict) or len(value) > 1:
        raise ContractError("bad_attribute", f"not an OTLP AnyValue: {str(value)[:80]}")
    if not value:
        return None
    kind, v = next(iter(value.items()))
    if kind in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        return v
    if kind == "intValue":
        try:
            return int(v)
        except (TypeError, ValueError):
            raise ContractError("bad_attribute", f"intValue {v!r} is not an integer") from None
    if kind == "arrayValue":
        return [any_value(x) for x in _list(v.get("values") if isinstance(v, dict) else None)]
    if kind == "kvlistValue":
        return attributes(v.get("values") if isinstance(v, dict) else None)
    raise ContractError("bad_attribute", f"unknown AnyValue kind {kind!r}")


def attributes(kvs) -> dict:
    """A list of OTLP KeyValue as a dict."""
    out = {}
    for kv in _list(kvs):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise ContractError("bad_attribute", "an attribute must be {\"key\", \"value\"}")
        out[kv["key"]] = any_value(kv.get("value", {}))
    return out


def map_record(raw: bytes | None) -> Mapped:
    """One Kafka record's value (or file line) -> Mapped; bad JSON is an error, not a raise."""
    if raw is None:
        return Mapped(errors=[ContractError("empty", "record has no value")])
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Mapped(errors=[ContractError("not_json", str(exc))])
    return map_request(request)


def map_request(request) -> Mapped:
    """An ExportTraceServiceRequest (parsed JSON) -> events, per span; errors name the span."""
    out = Mapped()
    try:
        if not isinstance(request, dict) or not isinstance(request.get("resourceSpans"), list):
            raise ContractError("not_otlp", "expected an OTLP traces request: "
                                            "{\"resourceSpans\": [...]}")
        for rs in request["resourceSpans"]:
            if not isinstance(rs, dict):
                raise ContractError("not_otlp", "a resourceSpans entry must be an object")
            resource = attributes(_object(rs.get("resource")).get("attributes"))
            for ss in _list(rs.get("scopeSpans")):
                for span in _list(_object(ss).get("spans")):
                    out.spans += 1
                    try:
                        events = map_span(span, resource)
                    except ContractError as err:   # (numbered: a span without ids)
                        out.bad += 1
                        out.errors.append(ContractError(err.code,
                                                        f"#{out.spans}: {err.message}"))
                        continue
                    if isinstance(events, str):
                        out.skipped[events] += 1
                    else:
                        out.events.extend(events)
    except ContractError as err:
        out.errors.append(err)
    return out


def map_span(span, resource: dict) -> list[dict] | str:
    """One span -> its events, or the reason it maps to none (a str); ContractError if bad."""
    if not isinstance(span, dict):
        raise ContractError("bad_span", "a span must be an object")
    trace, span_id = _hex_id(span, "traceId", 32), _hex_id(span, "spanId", 16)
    where = f"span {span_id} of trace {trace}"
    try:
        attrs = attributes(span.get("attributes"))
        op = attrs.get("gen_ai.operation.name")
        if op is None:
            return "not_gen_ai"
        if not isinstance(op, str):
            raise ContractError("bad_attribute", "gen_ai.operation.name must be a string")
        if op in NOT_MAPPED:
            return f"not_mapped:{op}"
        ids = {"task_id": f"otel-{trace}",
               "agent_id": str(resource.get("service.name") or "unknown_service")}
        if isinstance(attrs.get("gen_ai.conversation.id"), str):
            ids["conversation_id"] = attrs["gen_ai.conversation.id"]  # kept, not the task
        event_id = f"otel-{trace}-{span_id}"
        if op == "execute_tool":
            return [_action(span, attrs, ids, event_id, span_id)]
        if op == "invoke_agent":
            return _agent(span, attrs, resource, ids, event_id)
        raise ContractError("unknown_operation", f"gen_ai.operation.name {op!r} is not one "
                                                 "intentwatch maps or knows")
    except ContractError as err:
        raise ContractError(err.code, f"{where}: {err.message}") from None


def _action(span: dict, attrs: dict, ids: dict, event_id: str, span_id: str) -> dict:
    tool = attrs.get("gen_ai.tool.name")
    if not isinstance(tool, str) or not tool:
        raise ContractError("missing_attribute", "execute_tool span without gen_ai.tool.name")
    failed = _failed(span, attrs)
    event = {"v": 1, "type": "agent.action", "event_id": event_id, **ids,
             "event_time": _seconds(span, "endTimeUnixNano"), "tool": tool,
             "args": _arguments(attrs.get("gen_ai.tool.call.arguments")), "phase": "completed",
             "call_id": str(attrs.get("gen_ai.tool.call.id") or span_id),
             "status": "error" if failed else "ok"}
    result = attrs.get("gen_ai.tool.call.result")
    if result is None and failed:
        result = _object(span.get("status")).get("message") or attrs.get("error.type")
    if result is not None:
        text = result if isinstance(result, str) else orjson.dumps(result).decode()
        event["result"] = text[:MAX_RESULT_CHARS]
    return event


def _agent(span: dict, attrs: dict, resource: dict, ids: dict, event_id: str) -> list[dict]:
    """task.intent (when the span declares its tools) and task.end of the trace's task."""
    events = []
    definitions = _json_or_value(attrs.get("gen_ai.tool.definitions"))
    if definitions is not None:
        if not isinstance(definitions, list):
            raise ContractError("bad_attribute", "gen_ai.tool.definitions must be a list")
        service = ids["agent_id"]
        namespace = resource.get("service.namespace")
        intent = {"v": 1, "type": "task.intent", "event_id": event_id + "-intent", **ids,
                  # Not a SPIFFE id: what OTel's resource says of the workload.
                  "workload_id": f"otel://{namespace}/{service}" if namespace else
                                 f"otel://{service}",
                  "goal": _goal(attrs), "tools": _tool_names(definitions),
                  "event_time": _seconds(span, "startTimeUnixNano")}
        for key, attr in (("agent_name", "gen_ai.agent.name"), ("agent_ref", "gen_ai.agent.id")):
            if isinstance(attrs.get(attr), str):
                intent[key] = attrs[attr]
        events.append(intent)
    events.append({"v": 1, "type": "task.end", "event_id": event_id + "-end", **ids,
                   "event_time": _seconds(span, "endTimeUnixNano"),
                   "status": "failed" if _failed(span, attrs) else "completed"})
    return events


def _goal(attrs: dict) -> str:
    """The user's words: the text of the first user message the agent was given, else the
    agent's description or name (what it is for), else nothing."""
    messages = _json_or_value(attrs.get("gen_ai.input.messages"))
    for m in messages if isinstance(messages, list) else ():
        if isinstance(m, dict) and m.get("role") == "user":
            parts = m.get("parts")
            texts = [p.get("content") for p in parts if isinstance(p, dict)
                     and p.get("type") == "text" and isinstance(p.get("content"), str)] \
                if isinstance(parts, list) else []
            if texts:
                return "\n".join(texts)
    for attr in ("gen_ai.agent.description", "gen_ai.agent.name"):
        if isinstance(attrs.get(attr), str):
            return attrs[attr]
    return ""


def _tool_names(definitions: list) -> list[str]:
    """Names of the tool definitions: {"type", "name", ...} as the conventions give them, or
    {"type": "function", "function": {"name"}} as chat APIs do."""
    names = []
    for d in definitions:
        name = d.get("name") if isinstance(d, dict) else None
        if name is None and isinstance(d, dict) and isinstance(d.get("function"), dict):
            name = d["function"].get("name")
        if not isinstance(name, str) or not name:
            raise ContractError("bad_attribute", "a gen_ai.tool.definitions entry has no name")
        names.append(name)
    return list(dict.fromkeys(names))


def _arguments(value) -> dict:
    """gen_ai.tool.call.arguments: a JSON string (or structured value) -> the args object.
    Not recorded (it is opt-in) -> {}; a non-object -> {"value": it}, as the contract wants an
    object."""
    if value is None:
        return {}
    parsed = _json_or_value(value)
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _json_or_value(value):
    """Attributes the conventions type `any` are JSON strings where the SDK has no structured
    values: parse a string that holds JSON, keep anything else as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _failed(span: dict, attrs: dict) -> bool:
    code = _object(span.get("status")).get("code")
    return code in (STATUS_ERROR, "STATUS_CODE_ERROR") or attrs.get("error.type") is not None


def _seconds(span: dict, name: str) -> float:
    raw = span.get(name)
    try:
        nanos = int(raw)   # a string in OTLP JSON (64-bit), a number from some encoders
    except (TypeError, ValueError):
        raise ContractError("bad_span", f"{name} must be nanoseconds, got {raw!r}") from None
    if nanos <= 0:
        raise ContractError("bad_span", f"{name} must be positive")
    return nanos / 1e9


def _hex_id(span: dict, name: str, digits: int) -> str:
    value = span.get(name)
    if not (isinstance(value, str) and len(value) == digits and value.strip("0")):
        raise ContractError("bad_span", f"{name} must be {digits} hex digits, not all zero "
                                        f"(OTLP JSON), got {str(value)[:40]!r}")
    try:
        int(value, 16)
    except ValueError:
        raise ContractError("bad_span", f"{name} {value!r} is not hex") from None
    return value.lower()


def _object(value) -> dict:
    """An optional OTLP message: absent or null is empty; anything but an object is an error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContractError("not_otlp", f"expected an object, got {type(value).__name__}")
    return value


def _list(value) -> list:
    """An OTLP repeated field: absent or null is empty; anything but a list is an error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ContractError("not_otlp", f"expected a list, got {type(value).__name__}")
    return value
