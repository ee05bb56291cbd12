"""Per-task state as plain, JSON-serialisable data (it lives in a changelog-backed Faust table).

A task's state holds its declared intent and an event-time window of what it has done:
counts per tool, side-effecting count, distinct target resources, errors, the recent tool
sequence, and the times of recent actions (for rates). Every list is bounded, so one task's
state stays small whatever the agent does.
"""

from __future__ import annotations

RECENT_TOOLS = 16        # length of the recent tool sequence
MAX_RESOURCES = 64       # distinct target values remembered per task
MAX_OPEN_CALLS = 64      # requested calls waiting for their completion
MAX_PENDING = 64         # actions held while their intent has not arrived yet
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
        "window": {
            "actions": 0,
            "side_effects": 0,
            "errors": 0,
            "per_tool": {},
            "resources": [],
            "recent_tools": [],
            "recent_times": [],  # seconds after first_time (bounded)
            "first_time": None,
            "last_time": None,
        },
    }


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
    w["per_tool"][action["tool"]] = w["per_tool"].get(action["tool"], 0) + 1
    _push_bounded(w["recent_tools"], action["tool"], RECENT_TOOLS)
    if w["first_time"] is None:
        w["first_time"] = t
    # Times of the last RATE_WINDOW_SECONDS, as seconds after the first action: a short
    # number instead of a full timestamp, as this list is a good part of a task's bytes.
    times = w["recent_times"]
    times.append(round(t - w["first_time"], 3))
    horizon = times[-1] - RATE_WINDOW_SECONDS
    while times and times[0] < horizon:
        times.pop(0)
    del times[:-MAX_RECENT_TIMES]
    w["last_time"] = t if w["last_time"] is None else max(w["last_time"], t)
    for value in target_values(action, spec.targets):
        if value not in w["resources"]:
            _push_bounded(w["resources"], value, MAX_RESOURCES)
    call_id = action.get("call_id")
    if call_id:
        _push_bounded(task["open_calls"], call_id, MAX_OPEN_CALLS)


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
_ENDED_INTENT = ("v", "type", "task_id", "agent_id", "workload_id", "parent_task_id", "tools",
                 "scopes", "max_actions", "max_side_effects", "expires_at", "credentials",
                 "event_time")


def compact_ended(task: dict) -> dict:
    """A smaller state for an ended task, with the same shape as a live one."""
    small = new_task(task["task_id"])
    for key in ("ended_at", "revoked", "revoked_at", "flagged", "open_calls", "credentials"):
        if key in task:
            small[key] = task[key]
    if task["intent"] is not None:
        small["intent"] = {k: task["intent"][k] for k in _ENDED_INTENT if k in task["intent"]}
        small["intent"]["goal"] = ""
    w = task["window"]
    small["window"].update(actions=w["actions"], side_effects=w["side_effects"],
                           errors=w["errors"], first_time=w["first_time"],
                           last_time=w["last_time"])
    return small
