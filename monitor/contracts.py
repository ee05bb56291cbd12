"""Event contracts: the versioned JSON events agents and gateways publish.

One table (`SPECS`) describes every event type. The decoder validates against it and the JSON
Schemas in docs/schemas/ are generated from it (`intentwatch schemas`), so the documented contract
and the enforced one cannot drift apart.

Events stay plain dicts after validation: the hot path does not build model objects.
"""

from __future__ import annotations

import orjson

VERSION = 1
DEFAULT_MAX_BYTES = 512 * 1024

# Field kinds understood by the validator and the schema generator.
STR, NUM, INT, BOOL, OBJ, STRS, SCOPES = (
    "string", "number", "integer", "boolean", "object", "string[]", "scopes")

# type -> field -> (kind, required, description)
SPECS: dict[str, dict[str, tuple[str, bool, str]]] = {
    "task.intent": {
        "task_id": (STR, True, "Unique id of the task."),
        "agent_id": (STR, True, "Id of the agent that runs the task."),
        "workload_id": (STR, True, "Workload identity of the agent, a SPIFFE ID (spiffe://...)."),
        "parent_task_id": (STR, False, "Task that delegated this one, if any."),
        "goal": (STR, True, "The goal in the user's words."),
        "tools": (STRS, True, "Tools the task declares it needs."),
        "scopes": (SCOPES, False,
                   ("Allowed values per argument name, as glob patterns (fnmatch), "
                   "e.g. {\"recipient\": [\"*@example.com\"]}. Unlisted arguments are free.")),
        "max_actions": (INT, False, "Budget: most tool calls the task may make."),
        "max_side_effects": (INT, False, "Budget: most side-effecting tool calls."),
        "expires_at": (NUM, False, "Time to live: epoch seconds after which the task is over."),
        "max_delegation_depth": (INT, False, "How many levels of sub-agents it may spawn."),
        "credentials": (STRS, False, "Ids of the credentials issued for this task."),
        "event_time": (NUM, True, "When the intent was declared, epoch seconds."),
    },
    "agent.action": {
        "event_id": (STR, True, "Unique id of this event (used for de-duplication)."),
        "task_id": (STR, True, "Task the action belongs to."),
        "agent_id": (STR, True, "Agent that performs the action."),
        "event_time": (NUM, True, "When it happened, epoch seconds."),
        "tool": (STR, True, "Tool name."),
        "args": (OBJ, True, "Tool arguments."),
        "credential_id": (STR, False, "Id (never the value) of the credential presented."),
        "workload_id": (STR, False, "Workload identity (SPIFFE ID) that presented it."),
        "phase": (STR, True, "'requested' (before it runs) or 'completed' (after)."),
        "call_id": (STR, False, "Pairs a completed event with its request."),
        "status": (STR, False, "Completed only: 'ok' or 'error'."),
        "result": (STR, False, "Completed only: the tool's result text."),
    },
    "credential.issued": {
        "credential_id": (STR, True, "Id of the credential (never its value)."),
        "task_id": (STR, True, "Task it was issued for."),
        "workload_id": (STR, True, "Workload identity (SPIFFE ID) it was issued to."),
        "scopes": (STRS, False, "What it grants, in the issuer's words."),
        "expires_at": (NUM, True, "When it expires, epoch seconds."),
        "event_time": (NUM, True, "When it was issued, epoch seconds."),
        "event_id": (STR, False, "Unique id of this event."),
    },
    "credential.revoked": {
        "credential_id": (STR, True, "Id of the credential."),
        "task_id": (STR, True, "Task it was issued for."),
        "event_time": (NUM, True, "When it was revoked, epoch seconds."),
        "reason": (STR, False, "Why, in the revoker's words."),
        "event_id": (STR, False, "Unique id of this event."),
    },
    "task.end": {
        "task_id": (STR, True, "Task that ended."),
        "event_time": (NUM, True, "When it ended, epoch seconds."),
        "event_id": (STR, False, "Unique id of this event."),
        "status": (STR, False, "How it ended, e.g. 'completed', 'failed', 'cancelled'."),
    },
}

ENUMS = {("agent.action", "phase"): ("requested", "completed"),
         ("agent.action", "status"): ("ok", "error")}


class ContractError(ValueError):
    """An event that breaks the contract. `code` is short and stable (used as a metric label)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _is_strs(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_scopes(value) -> bool:
    return isinstance(value, dict) and all(_is_strs(v) for v in value.values())


_CHECKS = {
    STR: lambda v: isinstance(v, str),
    NUM: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    BOOL: lambda v: isinstance(v, bool),
    OBJ: lambda v: isinstance(v, dict),
    STRS: _is_strs,
    SCOPES: _is_scopes,
}
# Each spec is compiled once into a function of straight-line checks (as dataclasses and
# namedtuple generate their methods): validation runs on every event, and a loop over the
# fields calling a check per field cost about as much as deciding a simple event. Each field
# is checked with `type(value) is ...` first, the exact check only when that fails, so the
# errors are those of _CHECKS.
_FAST_TYPES = {STR: ("str",), NUM: ("float", "int"), INT: ("int",), BOOL: ("bool",),
               OBJ: ("dict",)}


def _compile(etype: str, spec: dict) -> object:
    def error(code: str, message: str) -> str:
        return f"raise ContractError({code!r}, {message!r})"

    lines = ["def check(event):", "    get = event.get"]
    for name, (kind, required, _) in spec.items():
        lines += [f"    value = get({name!r})",
                  "    if value is None:",
                  "        " + (error("missing_field", f"{etype}: missing field {name!r}")
                                if required else "pass"),
                  "    else:"]
        fast = "".join(f"type(value) is not {t} and " for t in _FAST_TYPES.get(kind, ()))
        lines += [f"        if {fast}not _CHECKS[{kind!r}](value):",
                  "            " + error("wrong_type", f"{etype}: field {name!r} must be {kind}")]
        allowed = ENUMS.get((etype, name))
        if allowed:
            lines += [f"        if value not in {allowed!r}:",
                      "            " + error("invalid_value",
                                             f"{etype}: {name!r} must be one of {allowed}")]
    lines.append("    return event")
    namespace = {"ContractError": ContractError, "_CHECKS": _CHECKS}
    exec("\n".join(lines), namespace)  # noqa: S102 -- source built above from SPECS only
    return namespace["check"]


_VALIDATORS = {etype: _compile(etype, spec) for etype, spec in SPECS.items()}


def validate(event) -> dict:
    """Check a parsed event against its spec; return it or raise ContractError."""
    if type(event) is not dict and not isinstance(event, dict):
        raise ContractError("not_object", "an event must be a JSON object")
    etype = event.get("type")
    check = _VALIDATORS.get(etype) if isinstance(etype, str) else None
    if check is None:
        raise ContractError("unknown_type", f"unknown event type {etype!r}")
    if event.get("v") != VERSION:
        raise ContractError("unsupported_version",
                            f"version {event.get('v')!r} is not supported (expected {VERSION})")
    return check(event)


def decode(raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Bytes from the bus to a validated event dict, or ContractError."""
    if raw is None:
        raise ContractError("empty", "record has no value")
    if len(raw) > max_bytes:
        raise ContractError("oversize", f"{len(raw)} bytes is over the limit of {max_bytes}")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError("not_json", str(exc)) from None
    return validate(event)


def encode(obj) -> bytes:
    return orjson.dumps(obj)


def json_schema(etype: str) -> dict:
    """JSON Schema (draft 2020-12) of one event type, generated from SPECS."""
    kinds = {
        STR: {"type": "string"}, NUM: {"type": "number"}, INT: {"type": "integer"},
        BOOL: {"type": "boolean"}, OBJ: {"type": "object"},
        STRS: {"type": "array", "items": {"type": "string"}},
        SCOPES: {"type": "object",
                 "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    }
    props = {"v": {"const": VERSION, "description": "Contract version."},
             "type": {"const": etype, "description": "Event type."}}
    for name, (kind, _, doc) in SPECS[etype].items():
        prop = dict(kinds[kind], description=doc)
        if (etype, name) in ENUMS:
            prop["enum"] = list(ENUMS[(etype, name)])
        props[name] = prop
    required = ["v", "type"] + [n for n, (_, req, _) in SPECS[etype].items() if req]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://intentwatch.dev/schemas/{etype}.v{VERSION}.json",
        "title": etype,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": True,
    }
