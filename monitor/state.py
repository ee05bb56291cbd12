"""Per-task state as plain, JSON-serialisable data (it lives in a changelog-backed Faust table).

A task's state holds its declared intent and an event-time window of what it has done: counts
of actions, side effects, errors and undeclared tools, the distinct targets it acted on (as
short hashes: only their number is read), and the times of recent actions (for rates). Every
list is bounded, so one task's state stays small whatever the agent does.
"""

from __future__ import annotations

import bisect
import zlib

MAX_TARGETS = 64         # distinct target values remembered per task
MAX_OPEN_CALLS = 64      # requested calls waiting for their completion
MAX_PENDING = 64         # actions held while their intent has not arrived yet
MAX_EARLY_CALLS = 16     # completions that came before their request (out of order)
RATE_WINDOW_SECONDS = 60.0
MAX_RECENT_TIMES = 30    # the rate feature counts up to 30 actions per window


def new_task(task_id: str) -> dict:
    return {
        "task_id": task_id,
        "intent": None,          # the task.intent event, once it has arrived
        "ended_at": None,        # event time of task.end
        "revoked": [],           # credential ids this monitor has revoked for the task
        "revoked_at": None,      # event time of the first revoke decision
        "flagged": False,        # any alert or revoke so far (a flagged task teaches no model)
        "pending": [],           # actions that arrived before the intent (bounded)
        "open_calls": [],        # call ids requested and not yet completed (bounded)
        "latest": None,          # the task's event-time watermark (monitor.event_time)
        "seen": {},              # fingerprint -> risk of recent events (monitor.event_time)
        "window": {
            "actions": 0,
            "side_effects": 0,
            "errors": 0,
            "undeclared": 0,     # actions of tools the intent did not declare
            "targets": [],       # crc32 of each distinct target value (bounded)
            "recent_times": [],  # seconds after first_time (bounded)
            "first_time": None,
            "last_time": None,
        },
    }


def upgrade(task: dict) -> dict:
    """A state written by version 0.1.0 (per-tool counts, the recent tool names and the target
    values themselves in its window) in today's shape. Undeclared tools are counted against the
    intent the state holds."""
    w = task["window"]
    if "per_tool" in w:
        declared = (task["intent"] or {}).get("tools") or ()
        w["undeclared"] = sum(n for tool, n in w.pop("per_tool").items() if tool not in declared)
        w["targets"] = [target_hash(v) for v in w.pop("resources", [])]
        w.pop("recent_tools", None)
    return task


# The fields of a task.intent its state keeps: what the detectors and decisions read (not the
# event's version, type and task id, repeated in the state, nor any field beyond the contract).
INTENT_FIELDS = ("agent_id", "workload_id", "parent_task_id", "goal", "tools", "scopes",
                 "max_actions", "max_side_effects", "expires_at", "max_delegation_depth",
                 "credentials", "event_time")


def kept_intent(intent: dict) -> dict:
    return {k: intent[k] for k in INTENT_FIELDS if k in intent}


def target_hash(value: str) -> int:
    return zlib.crc32(value.encode())


def _push_bounded(items: list, value, limit: int) -> None:
    items.append(value)
    if len(items) > limit:
        del items[: len(items) - limit]


def target_values(action: dict, targets: tuple[str, ...]) -> list[str]:
    """The values of an action's target arguments, as strings (lists are flattened)."""
    out = []
    args = action["args"]
    for name in targets:
        value = args.get(name)
        if isinstance(value, list):
            out.extend(str(v) for v in value)
        elif value is not None:
            out.append(str(value))
    return out


def record_action(task: dict, action: dict, spec) -> None:
    """Account a requested action in the task's window."""
    w = task["window"]
    t = action["event_time"]
    w["actions"] += 1
    if spec.side_effecting:
        w["side_effects"] += 1
    if action["tool"] not in task["intent"]["tools"]:
        w["undeclared"] += 1
    if w["first_time"] is None:
        w["first_time"] = t
    # Times of the last RATE_WINDOW_SECONDS, as seconds after the first action: a short
    # number instead of a full timestamp, as this list is a good part of a task's bytes.
    # Kept sorted, so an action that comes out of order lands where its time puts it.
    times = w["recent_times"]
    bisect.insort(times, round(t - w["first_time"], 3))
    horizon = times[-1] - RATE_WINDOW_SECONDS
    while times and times[0] < horizon:
        times.pop(0)
    del times[:-MAX_RECENT_TIMES]
    w["last_time"] = t if w["last_time"] is None else max(w["last_time"], t)
    if spec.targets:
        targets = w["targets"]
        for value in target_values(action, spec.targets):
            h = target_hash(value)
            if h not in targets:
                _push_bounded(targets, h, MAX_TARGETS)
    call_id = action.get("call_id")
    if call_id and action.get("phase") != "completed":
        _push_bounded(task["open_calls"], call_id, MAX_OPEN_CALLS)
    elif call_id:  # a completion before its request: the request must not count it again
        _push_bounded(task.setdefault("early_calls", []), call_id, MAX_EARLY_CALLS)


def request_after_completion(task: dict, action: dict) -> bool:
    """True for the request of a call whose completion came first (and was counted then)."""
    call_id = action.get("call_id")
    early = task.get("early_calls")
    if call_id and early and call_id in early:
        early.remove(call_id)
        return True
    return False


def record_completion(task: dict, action: dict) -> bool:
    """Account a completed action. True when it closes a call this monitor saw requested."""
    if action.get("status") == "error":
        task["window"]["errors"] += 1
    call_id = action.get("call_id")
    if call_id and call_id in task["open_calls"]:
        task["open_calls"].remove(call_id)
        return True
    return False


def hold_pending(task: dict, action: dict) -> dict | None:
    """Hold an action until its intent arrives; return the one pushed out when full."""
    task["pending"].append(action)
    if len(task["pending"]) > MAX_PENDING:
        return task["pending"].pop(0)
    return None


# What an ended task still needs: enough to refuse and explain anything it does after its end,
# and to pair late completions with their requests. The rest (results seen, the window's
# lists, the learned detectors' per-task data) has served its purpose once the task has ended
# and its detectors have learned from it.
_ENDED_INTENT = ("agent_id", "workload_id", "parent_task_id", "tools", "scopes", "max_actions",
                 "max_side_effects", "expires_at", "credentials", "event_time")


def ended_intent(intent: dict) -> dict:
    """What an ended task keeps of its intent."""
    return dict({k: intent[k] for k in _ENDED_INTENT if k in intent}, goal="")


def compact_ended(task: dict) -> dict:
    """A smaller state for an ended task, with the same shape as a live one."""
    small = new_task(task["task_id"])
    for key in ("ended_at", "revoked", "revoked_at", "flagged", "open_calls", "credentials",
                "latest", "seen", "early_calls"):
        if key in task:
            small[key] = task[key]
    if task["intent"] is not None:
        small["intent"] = ended_intent(task["intent"])
    w = task["window"]
    small["window"].update(actions=w["actions"], side_effects=w["side_effects"],
                           errors=w["errors"], first_time=w["first_time"],
                           last_time=w["last_time"])
    return small
